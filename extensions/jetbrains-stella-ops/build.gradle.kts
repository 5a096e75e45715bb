plugins {
    id("org.jetbrains.kotlin.jvm") version "2.1.20" apply false
    id("org.jetbrains.intellij.platform") version "2.5.0" apply false
}

allprojects {
    group = "org.stellaops"
    version = "0.1.0"
}

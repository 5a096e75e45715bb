// The IntelliJ plugin: thin adapters over :core. Built with the IntelliJ Platform Gradle Plugin 2.x.
plugins {
    id("org.jetbrains.kotlin.jvm")
    id("org.jetbrains.intellij.platform")
}

repositories {
    mavenCentral()
    intellijPlatform { defaultRepositories() }
}

kotlin { jvmToolchain(17) }

dependencies {
    implementation(project(":core"))
    intellijPlatform {
        intellijIdeaCommunity("2024.3.5")
        bundledPlugin("org.jetbrains.plugins.yaml")
    }
}

intellijPlatform {
    pluginConfiguration {
        id = "org.stellaops.intellij"
        name = "Stella Ops"
        version = project.version.toString()
        ideaVersion {
            sinceBuild = "243"
        }
    }
}

// The shared stella.yaml schema (owned by extensions/schema) is packaged with the plugin.
tasks.processResources {
    from(rootProject.file("../schema/stella.schema.json")) { into("schema") }
}

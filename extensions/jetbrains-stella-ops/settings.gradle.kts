// Gradle build of the Stella Ops JetBrains plugin. Needs network access to Maven Central and the
// JetBrains repositories (IntelliJ Platform SDK); see README.md. CI on machines without them uses ci.sh.
rootProject.name = "jetbrains-stella-ops"

pluginManagement {
    repositories {
        gradlePluginPortal()
        mavenCentral()
    }
}

include(":core", ":ide")

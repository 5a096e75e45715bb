// Plain Kotlin, no IntelliJ dependency: all client logic and its tests.
// The same sources are compiled and tested without Gradle by ../ci.sh (kotlinc from npm, JUnit 5 from Debian).
plugins {
    id("org.jetbrains.kotlin.jvm")
}

repositories { mavenCentral() }

kotlin { jvmToolchain(17) }

dependencies {
    // The IDE provides the Kotlin stdlib at runtime (kotlin.stdlib.default.dependency=false).
    compileOnly(kotlin("stdlib"))
    testImplementation(kotlin("stdlib"))
    // Same versions as the Debian packages ci.sh uses (libjackson2-databind-java, libyaml-snake-java).
    implementation("com.fasterxml.jackson.core:jackson-databind:2.14.0")
    implementation("org.yaml:snakeyaml:1.33")

    testImplementation("org.junit.jupiter:junit-jupiter:5.9.2")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher:1.9.1")
}

tasks.test {
    useJUnitPlatform()
    // The contract, fixture and daemon tests need the shared fake server and the daemon: run ../ci.sh,
    // or start them yourself and set these variables.
    environment("STELLA_SCHEMA", rootProject.file("../schema/stella.schema.json").absolutePath)
    environment("STELLA_FIXTURES_DIR", rootProject.file("../fixtures").absolutePath)
}

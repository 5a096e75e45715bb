package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import java.nio.file.Files
import java.nio.file.Path

/**
 * The shared `extensions/fixtures/stella-yaml/<case>/` files: the checker must report exactly the diagnostics
 * of `expected.json` (kind, severity, path, property, 1-based line/column), as the VS Code extension does.
 */
class FixturesTest {
    private val dir: Path by lazy {
        Path.of(System.getenv("STELLA_FIXTURES_DIR") ?: throw AssertionError("STELLA_FIXTURES_DIR is not set: run through ci.sh"))
            .resolve("stella-yaml")
    }

    private fun cases(): List<Path> = Files.list(dir).use { s -> s.filter { Files.isDirectory(it) }.sorted().toList() }

    @Test
    fun `the fixtures are there`() {
        assertTrue(cases().size >= 10, "expected the shared fixtures under $dir, found ${cases().size}")
    }

    @TestFactory
    fun `each fixture gives the expected diagnostics`(): List<DynamicTest> = cases().map { case ->
        DynamicTest.dynamicTest(case.fileName.toString()) {
            val expected = Json.parse(Files.readString(case.resolve("expected.json")))
            val text = Files.readString(case.resolve(expected.str("file") ?: "stella.yaml"))
            val server = expected.node("context")?.node("serverEnvironments")?.map { it.asText() }
            val result = StellaYamlTest.checker.check(text, server)
            assertEquals(expected.bool("ignored") ?: false, result.ignored, "ignored")
            assertEquals(expected.bool("valid"), result.valid, "valid")
            assertEquals(expected.get("diagnostics").map(::normalise), result.diagnostics.map(::asMap)) { "diagnostics of ${case.fileName}" }
        }
    }

    private fun normalise(n: JsonNode): Map<String, Any?> = buildMap {
        put("kind", n.str("kind")); put("severity", n.str("severity")); put("path", n.str("path") ?: "")
        put("line", n.int("line")); put("column", n.int("column"))
        n.str("property")?.let { put("property", it) }
    }

    private fun asMap(d: Diagnostic): Map<String, Any?> = buildMap {
        put("kind", d.kind); put("severity", d.severity.wire); put("path", d.path)
        put("line", d.line); put("column", d.column)
        d.property?.let { put("property", it) }
    }
}

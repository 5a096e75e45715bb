package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.nio.file.Files
import java.nio.file.Path

/** The checker against the shared schema file with hand-written cases; the shared fixtures are in [FixturesTest]. */
class StellaYamlTest {
    companion object {
        val schemaPath: Path by lazy {
            Path.of(System.getenv("STELLA_SCHEMA") ?: throw AssertionError("STELLA_SCHEMA is not set: run through ci.sh"))
        }
        val checker: StellaYamlChecker by lazy { StellaYamlChecker.load(Files.readString(schemaPath)) }
    }

    private val valid = """
        version: 1
        project: myapp
        tenant: acme
        components:
          - name: api
            image: registry.example.com/myapp/api
        environments:
          - name: dev
          - name: stage
            requiredApprovals: 1
          - name: prod
            requiredApprovals: 2
            requireSod: true
        promotion:
          policy: default
          from: stage
          to: prod
    """.trimIndent() + "\n"

    @Test
    fun `the documented example is clean`() {
        assertEquals(CheckResult(false, emptyList()), checker.check(valid))
    }

    @Test
    fun `unknown environment in the promotion path points at the value`() {
        val text = valid.replace("from: stage", "from: staging")
        val d = checker.check(text).diagnostics.single()
        assertEquals("unknown-environment", d.kind)
        val line = text.lines().indexOfFirst { it.contains("from: staging") }
        assertEquals(line + 1, d.line)
        assertEquals(text.lines()[line].indexOf("staging") + 1, d.column)
        assertEquals("staging", text.substring(d.range!!.startOffset, d.range!!.endOffset))
    }

    @Test
    fun `missing required fields and unknown keys`() {
        val text = "version: 1\nenvironments:\n  - displayName: Dev\n    colour: blue\n"
        val ds = checker.check(text).diagnostics
        val codes = ds.map { Triple(it.kind, it.path, it.property) }
        assertTrue(Triple("schema-required", "", "project") in codes, "$codes")
        assertTrue(Triple("schema-required", "/environments/0", "name") in codes, "$codes")
        val unknown = ds.single { it.kind == "schema-additional-property" }
        assertEquals("/environments/0/colour", unknown.path)
        assertEquals("colour", text.substring(unknown.range!!.startOffset, unknown.range!!.endOffset))
    }

    @Test
    fun `types, const, pattern and minimum`() {
        val text = "version: 2\nproject: My App\nenvironments:\n  - name: dev\n    requiredApprovals: -1\n    requireSod: \"yes\"\n"
        val codes = checker.check(text).diagnostics.map { it.kind to it.path }.toSet()
        assertEquals(setOf("schema-const" to "/version", "schema-pattern" to "/project", "schema-minimum" to "/environments/0/requiredApprovals", "schema-type" to "/environments/0/requireSod"), codes)
    }

    @Test
    fun `empty environments list and wrong container types`() {
        assertEquals(listOf("schema-min-items"), checker.check("version: 1\nproject: a\nenvironments: []\n").diagnostics.map { it.kind })
        assertEquals(listOf("schema-type"), checker.check("version: 1\nproject: a\nenvironments:\n  dev: {}\n").diagnostics.map { it.kind })
    }

    @Test
    fun `duplicate environments are reported at the second one`() {
        val text = "version: 1\nproject: a\nenvironments:\n  - name: dev\n  - name: dev\n"
        val d = checker.check(text).diagnostics.single()
        assertEquals("duplicate-name", d.kind); assertEquals(5, d.line); assertEquals(11, d.column)
    }

    @Test
    fun `syntax errors become one diagnostic with a position`() {
        val ds = checker.check("version: 1\nproject: [a\n").diagnostics
        assertEquals("yaml-syntax", ds.single().kind)
        assertNull(ds.single().line)
        // duplicate keys are a syntax error, as in YAML 1.2 parsers
        assertEquals(listOf("yaml-syntax"), checker.check("version: 1\nversion: 1\n").diagnostics.map { it.kind })
    }

    @Test
    fun `YAML 1_2 core schema - yes is a string, an empty value is located at its key`() {
        val ds = checker.check("version: 1\nproject: a\nenvironments:\n  - name: dev\n    requireSod: yes\ntenant:\n").diagnostics
        assertEquals(listOf(Triple("schema-type", "/environments/0/requireSod", 5), Triple("schema-type", "/tenant", 6)), ds.map { Triple(it.kind, it.path, it.line) })
        assertEquals(1, ds[1].column)
    }

    @Test
    fun `semantic checks wait for a schema-valid file`() {
        val ds = checker.check("version: 1\nproject: a\nenvironments:\n  - name: dev\npromotion:\n  from: qa\n  extra: 1\n").diagnostics
        assertEquals(listOf("schema-additional-property"), ds.map { it.kind })
    }
}

class StellaProjectFileTest {
    private val text = java.nio.file.Files.readString(
        java.nio.file.Path.of(System.getenv("STELLA_FIXTURES_DIR") ?: throw AssertionError("STELLA_FIXTURES_DIR is not set"), "stella-yaml", "valid-full", "stella.yaml"))

    @Test
    fun `project, server and environments with positions`() {
        val f = StellaProjectFile.parse(text)!!
        assertEquals("myapp", f.project); assertEquals("https://stella.example.com", f.server); assertEquals("acme", f.tenant)
        assertEquals(listOf("dev", "stage", "prod"), f.environments.map { it.name })
        assertEquals("stage", f.promotionFrom); assertEquals("prod", f.promotionTo)
        val stage = f.environments[1]
        assertEquals("stage", text.substring(stage.nameRange.startOffset, stage.nameRange.endOffset))
        // caret on "requiredApprovals: 1" belongs to stage
        assertEquals("stage", f.environmentAt(text.indexOf("requiredApprovals: 1"))!!.name)
        assertNull(f.environmentAt(0))
        assertEquals("prod", f.next("stage")); assertNull(f.next("prod"))
    }

    @Test
    fun `the integrations it depends on, and where project and promotion are`() {
        val f = StellaProjectFile.parse(text)!!
        assertEquals(emptyList<String>(), f.integrations)
        assertEquals("myapp", text.substring(f.projectRange!!.startOffset, f.projectRange!!.endOffset))
        assertEquals(16, f.promotionRange!!.line)
        assertTrue(text.startsWith("promotion:", f.promotionRange!!.startOffset))
        val dir = java.nio.file.Path.of(System.getenv("STELLA_FIXTURES_DIR")!!, "stella-yaml")
        val with = StellaProjectFile.parse(java.nio.file.Files.readString(dir.resolve("valid-integrations/stella.yaml")))!!
        assertEquals(listOf("harbor-prod", "0193aaaa-0000-7000-8000-00000000000a"), with.integrations)
        val bad = StellaProjectFile.parse(java.nio.file.Files.readString(dir.resolve("invalid-integrations/stella.yaml")))!!
        assertEquals(listOf("harbor-prod"), bad.integrations, "only the entries that are names")
    }

    @Test
    fun `not a project file`() {
        assertNull(StellaProjectFile.parse("openapi: 3.1.0\npaths: {}\n"))
        assertNull(StellaProjectFile.parse("a: [\n"))
    }
}

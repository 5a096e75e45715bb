package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import com.fasterxml.jackson.databind.node.ObjectNode
import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.nio.file.Files
import java.nio.file.Path

/**
 * Drift between the API descriptions and the models: every required property of the schemas the plugin reads
 * must survive parsing (`from`) and the cache format (`toJson`), and the status enums must match.
 * Sources: this daemon's `openapi.json` and the shared `extensions/contracts/orchestrator-authority.openapi.yaml`.
 */
class ContractDriftTest {
    private fun load(env: String): JsonNode {
        val p = Path.of(System.getenv(env) ?: throw AssertionError("$env is not set: run through ci.sh"))
        val text = Files.readString(p)
        return if (p.toString().endsWith(".json")) Json.parse(text)
        else Json.mapper.valueToTree(org.yaml.snakeyaml.Yaml().load<Any>(text))
    }

    private val daemon by lazy { load("STELLA_OPENAPI") }
    private val orchestrator by lazy { load("STELLA_CONTRACT") }

    private fun schemas(doc: JsonNode) = doc.get("components").get("schemas")

    private fun resolve(doc: JsonNode, s: JsonNode): JsonNode {
        var cur = s
        cur.node("allOf")?.let { if (it.size() == 1) cur = it[0] }
        while (cur.has("\$ref")) cur = doc.at(cur.get("\$ref").asText().removePrefix("#"))
        return cur
    }

    /** A value of the schema's type, distinguishable per property. */
    private fun sample(doc: JsonNode, s0: JsonNode, name: String): JsonNode {
        val s = resolve(doc, s0)
        s.node("enum")?.let { return it[0] }
        return when (s.str("type")) {
            "string" -> Json.toNode(if (s.str("format") == "date-time") "2026-11-28T12:00:00Z" else "v-$name")
            "integer" -> Json.toNode(7)
            "number" -> Json.toNode(7.5)
            "boolean" -> Json.toNode(true)
            "array" -> Json.arr(listOf(sample(doc, s.get("items"), name)))
            "object", null -> {
                val o = Json.obj()
                val req = s.node("required")?.map { it.asText() } ?: emptyList()
                s.node("properties")?.fields()?.forEach { (k, v) -> if (k in req) o.set<JsonNode>(k, sample(doc, v, k)) }
                o
            }
            else -> Json.toNode("v-$name")
        }
    }

    private fun assertRoundTrip(doc: JsonNode, schema: String, parse: (JsonNode) -> JsonNode) {
        val s = schemas(doc).get(schema) ?: throw AssertionError("schema $schema is gone")
        val input = sample(doc, s, schema) as ObjectNode
        val output = parse(input)
        val required = s.node("required")?.map { it.asText() } ?: emptyList()
        assertTrue(required.isNotEmpty(), "$schema has required properties")
        for (p in required) {
            val a = input.get(p); val b = output.get(p)
            assertNotNull(b, "$schema.$p is not read by the plugin")
            if (a.isValueNode) assertEquals(a.asText(), b.asText(), "$schema.$p")
        }
    }

    private fun enumOf(doc: JsonNode, schema: String) = schemas(doc).get(schema).get("enum").map { it.asText() }

    @Test
    fun `daemon - Integration, HealthCheckResult and the status enum`() {
        assertRoundTrip(daemon, "Integration") { Integration.from(it).toJson() }
        assertRoundTrip(daemon, "HealthCheckResult") { n ->
            val r = HealthCheckResult.from(n)
            Json.obj("status" to r.status.wire, "reason" to r.reason, "message" to r.message, "latencyMs" to r.latencyMs, "checkedAt" to r.checkedAt)
        }
        assertEquals(HealthStatus.entries.map { it.wire }.toSet(), enumOf(daemon, "IntegrationStatus").toSet())
        val page = schemas(daemon).get("IntegrationPage").get("properties")
        assertTrue(page.has("items") && page.has("nextCursor"), "IntegrationPage has items and nextCursor")
    }

    @Test
    fun `orchestrator - Release, Environment, Promotion and their enums`() {
        assertRoundTrip(orchestrator, "Release") { Release.from(it).toJson() }
        assertRoundTrip(orchestrator, "Environment") { Environment.from(it).toJson() }
        assertRoundTrip(orchestrator, "CurrentRelease") { CurrentRelease.from(it).toJson() }
        assertRoundTrip(orchestrator, "Promotion") { Promotion.from(it).toJson() }
        val statuses = enumOf(orchestrator, "PromotionStatus")
        assertTrue(statuses.containsAll(Promotion.TERMINAL), "terminal statuses $statuses")
        assertEquals("pending", statuses.first())
    }

    @Test
    fun `authority - token and device responses carry what the client reads`() {
        val token = sample(orchestrator, schemas(orchestrator).get("TokenResponse"), "token")
        val t = TokenSet.fromTokenResponse(token, MutableClock().instant())
        assertEquals(token.str("access_token"), t.accessToken)
        assertEquals(MutableClock().instant().plusSeconds(token.long("expires_in")!!), t.expiresAt)
        val device = schemas(orchestrator).get("DeviceAuthorizationResponse").get("required").map { it.asText() }.toSet()
        assertEquals(setOf("device_code", "user_code", "verification_uri", "expires_in"), device)
        val discovery = schemas(orchestrator).get("OpenIdConfiguration").get("properties")
        for (k in listOf("token_endpoint", "device_authorization_endpoint", "revocation_endpoint")) assertTrue(discovery.has(k), k)
    }
}

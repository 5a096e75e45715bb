package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import java.net.URI

/**
 * Handle on the shared fake Orchestrator/Authority (`extensions/contracts/fake-server/server.mjs`), started by
 * ci.sh; its URL comes from `STELLA_FAKE_URL`. Tests fail (not skip) when it is missing.
 */
object FakeServer {
    val uri: URI by lazy {
        val u = System.getenv("STELLA_FAKE_URL")
            ?: throw AssertionError("STELLA_FAKE_URL is not set: run the tests through extensions/jetbrains-stella-ops/ci.sh")
        URI.create(u)
    }
    private val http = HttpTransport()

    fun control(path: String, body: JsonNode? = null): JsonNode {
        val r = http.send(if (body == null && !path.startsWith("/reset")) "GET" else "POST", uri.resolvePath("/_control$path"),
            body = body?.let(Json::write) ?: if (path.startsWith("/reset")) "{}" else null,
            contentType = "application/json").await()
        check(r.ok) { "control $path: ${r.status} ${r.body}" }
        return r.json()
    }

    fun reset() = control("/reset")
    fun config(vararg pairs: Pair<String, Any?>) = control("/config", Json.obj(*pairs))
    fun down(mode: String) = control("/down", Json.obj("down" to true, "mode" to mode))
    fun up() = control("/down", Json.obj("down" to false))
    fun state(): JsonNode = control("/state")
    fun requests(): List<JsonNode> = control("/requests").toList()

    fun authority(transport: HttpTransport = HttpTransport(), clientId: String = "stella-ci", secret: String? = "stella-ci-secret") =
        AuthorityClient(uri, transport, clientId, secret)

    /** A token manager for the confidential CI client (client credentials). */
    fun ciTokens(store: TokenStore = InMemoryTokenStore(), transport: HttpTransport = HttpTransport()) =
        TokenManager(authority(transport), store, "fake", useClientCredentials = true)
}

package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.time.Duration
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/** Token logic against a scripted local Authority (edge cases: fallback, pending/slow_down, concurrency). */
class AuthTest {
    private fun tokenJson(n: Int, refresh: Boolean = true, expires: Int = 100) =
        """{"access_token":"at-$n","token_type":"Bearer","expires_in":$expires${if (refresh) ""","refresh_token":"rt-$n"""" else ""}}"""

    @Test
    fun `without discovery the legacy oauth token path is used`() = LocalServer().use { s ->
        s.route("/.well-known/openid-configuration") { reply(404, "") }
        s.route("/oauth/token") { reply(200, tokenJson(1, refresh = false)) }
        val a = AuthorityClient(s.uri, HttpTransport())
        val ep = a.discover().await()
        assertFalse(ep.discovered)
        assertEquals("/oauth/token", ep.tokenEndpoint.path)
        assertEquals("at-1", a.clientCredentials("orch:read").await().accessToken)
        val form = formOf(s.seen.last { it.path == "/oauth/token" }.body)
        assertEquals("client_credentials", form["grant_type"]); assertEquals("orch:read", form["scope"]); assertEquals("stella-ide", form["client_id"])
    }

    @Test
    fun `discovery offline is reported as offline, not as a fallback`() {
        val a = AuthorityClient(java.net.URI.create("http://127.0.0.1:${closedPort()}"), HttpTransport())
        assertTrue(a.discover().failure() is OfflineException)
    }

    @Test
    fun `refresh at 80 percent of the lifetime, not before`() = LocalServer().use { s ->
        val n = AtomicInteger(1)
        s.route("/.well-known/openid-configuration") { reply(200, """{"issuer":"x","token_endpoint":"${s.uri}/token","grant_types_supported":["refresh_token"]}""") }
        s.route("/token") { req ->
            val f = formOf(req.body)
            assertEquals("refresh_token", f["grant_type"])
            assertEquals("rt-${n.get()}", f["refresh_token"])
            reply(200, tokenJson(n.incrementAndGet()))
        }
        val clock = MutableClock()
        val store = InMemoryTokenStore()
        store.save("k", TokenSet.fromTokenResponse(Json.parse(tokenJson(1)), clock.instant()))
        val tm = TokenManager(AuthorityClient(s.uri, HttpTransport(), clock = clock), store, "k", clock = clock)
        clock.advance(79)
        assertEquals("at-1", tm.bearer().await())
        clock.advance(1)
        assertEquals("at-2", tm.bearer().await())
        assertEquals("rt-2", store.load("k")!!.refreshToken, "the rotated refresh token is stored")
        assertEquals("at-2", tm.bearer().await())
        assertEquals(1, s.seen.count { it.path == "/token" })
    }

    @Test
    fun `concurrent callers share one refresh`() = LocalServer().use { s ->
        s.route("/.well-known/openid-configuration") { reply(200, """{"token_endpoint":"/token"}""") }
        s.route("/token") { Thread.sleep(300); reply(200, tokenJson(2)) }
        val clock = MutableClock()
        val store = InMemoryTokenStore()
        store.save("k", TokenSet.fromTokenResponse(Json.parse(tokenJson(1)), clock.instant()))
        clock.advance(90)
        val tm = TokenManager(AuthorityClient(s.uri, HttpTransport(), clock = clock), store, "k", clock = clock)
        val all = (1..8).map { tm.bearer() }
        CompletableFuture.allOf(*all.toTypedArray()).get(10, TimeUnit.SECONDS)
        assertEquals(setOf("at-2"), all.map { it.get() }.toSet())
        assertEquals(1, s.seen.count { it.path == "/token" })
    }

    @Test
    fun `a revoked refresh token signs the user out`() = LocalServer().use { s ->
        s.route("/.well-known/openid-configuration") { reply(200, """{"token_endpoint":"/token"}""") }
        s.route("/token") { reply(400, """{"error":"invalid_grant","error_description":"refresh token revoked"}""") }
        val clock = MutableClock()
        val store = InMemoryTokenStore()
        store.save("k", TokenSet.fromTokenResponse(Json.parse(tokenJson(1)), clock.instant()))
        clock.advance(200)
        val tm = TokenManager(AuthorityClient(s.uri, HttpTransport(), clock = clock), store, "k", clock = clock)
        assertTrue(tm.bearer().failure() is NotSignedInException)
        assertNull(store.load("k"))
    }

    @Test
    fun `Authority down while the access token is still valid keeps the token`() {
        val clock = MutableClock()
        val store = InMemoryTokenStore()
        store.save("k", TokenSet.fromTokenResponse(Json.parse(tokenJson(1)), clock.instant()))
        clock.advance(90)
        val a = AuthorityClient(java.net.URI.create("http://127.0.0.1:${closedPort()}"), HttpTransport(), clock = clock)
        val tm = TokenManager(a, store, "k", clock = clock)
        assertEquals("at-1", tm.bearer().await())
        clock.advance(20)
        assertTrue(tm.bearer().failure() is OfflineException)
    }

    @Test
    fun `a 401 from an API invalidates the token, refreshes and retries once`() = LocalServer().use { s ->
        val n = AtomicInteger(1)
        s.route("/.well-known/openid-configuration") { reply(200, """{"token_endpoint":"/token"}""") }
        s.route("/token") { reply(200, tokenJson(n.incrementAndGet())) }
        s.route("/api/v1/releases") { req ->
            if (req.headers["authorization"] == "Bearer at-2") reply(200, """{"success":true,"data":[{"id":"r1","name":"one"}]}""")
            else reply(401, """{"success":false,"error":{"code":"UNAUTHORIZED","message":"expired"}}""")
        }
        val clock = MutableClock()
        val store = InMemoryTokenStore()
        store.save("k", TokenSet.fromTokenResponse(Json.parse(tokenJson(1)), clock.instant()))
        val tm = TokenManager(AuthorityClient(s.uri, HttpTransport(), clock = clock), store, "k", clock = clock)
        val releases = OrchestratorClient(s.uri, HttpTransport(), tm).releases().await()
        assertEquals(listOf("r1"), releases.map { it.id })
        assertEquals(listOf("Bearer at-1", "Bearer at-2"), s.seen.filter { it.path == "/api/v1/releases" }.map { it.headers["authorization"] })
    }

    @Test
    fun `a second 401 is not retried again`() = LocalServer().use { s ->
        s.route("/api/v1/releases") { reply(401, """{"success":false,"error":{"code":"UNAUTHORIZED","message":"no"}}""") }
        val invalidated = AtomicInteger()
        val renewing = object : BearerProvider {
            override fun bearer(cancellation: Cancellation?) = CompletableFuture.completedFuture("t${invalidated.get()}")
            override fun invalidate() { invalidated.incrementAndGet() }
        }
        val err = OrchestratorClient(s.uri, HttpTransport(), renewing).releases().failure()
        assertEquals(401, (err as ApiException).status)
        assertEquals(listOf("Bearer t0", "Bearer t1"), s.seen.map { it.headers["authorization"] })
        assertEquals(1, invalidated.get())
    }

    @Test
    fun `a 401 with a fixed API key is reported without a retry`() = LocalServer().use { s ->
        s.route("/api/v1/integrations") { reply(401, """{"type":"about:blank","title":"Unauthorized","status":401,"code":"unauthorized","detail":"unknown key"}""", "Content-Type" to "application/problem+json") }
        val err = IntegrationsClient(s.uri, HttpTransport(), StaticBearer("k")).page().failure() as ApiException
        assertEquals(401, err.status); assertEquals("unauthorized", err.code); assertEquals("unknown key", err.detail)
        assertEquals(1, s.seen.size)
    }

    @Test
    fun `device flow waits through authorization_pending and slow_down`() = LocalServer().use { s ->
        val polls = AtomicInteger()
        s.route("/.well-known/openid-configuration") {
            reply(200, """{"token_endpoint":"/token","device_authorization_endpoint":"/device_authorization"}""")
        }
        s.route("/device_authorization") { reply(200, """{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"http://127.0.0.1/verify","expires_in":60,"interval":1}""") }
        s.route("/token") { req ->
            assertEquals(DEVICE_CODE_GRANT, formOf(req.body)["grant_type"])
            when (polls.incrementAndGet()) {
                1 -> reply(400, """{"error":"authorization_pending"}""")
                2 -> reply(400, """{"error":"slow_down"}""")
                else -> reply(200, tokenJson(7))
            }
        }
        val a = AuthorityClient(s.uri, HttpTransport())
        val d = a.startDeviceAuthorization("orch:read").await()
        assertEquals("ABCD-EFGH", d.userCode)
        // intervals in milliseconds to keep the test short: 1, 1, 6
        val t = a.pollDeviceToken(d, Duration.ofSeconds(10), TimeUnit.MILLISECONDS).await()
        assertEquals("at-7", t.accessToken)
        assertEquals(3, polls.get())
    }

    @Test
    fun `device flow stops when the user denies`() = LocalServer().use { s ->
        s.route("/.well-known/openid-configuration") { reply(200, """{"token_endpoint":"/token"}""") }
        s.route("/token") { reply(400, """{"error":"access_denied","error_description":"user said no"}""") }
        val err = AuthorityClient(s.uri, HttpTransport()).pollDeviceToken(DeviceAuthorization("dc", "U", "v", null, 60, 1), intervalUnit = TimeUnit.MILLISECONDS).failure()
        assertEquals("access_denied", (err as ApiException).code)
        assertEquals(1, s.seen.count { it.path == "/token" })
    }

    @Test
    fun `device flow stops on its deadline`() = LocalServer().use { s ->
        s.route("/.well-known/openid-configuration") { reply(200, """{"token_endpoint":"/token","device_authorization_endpoint":"/da"}""") }
        s.route("/token") { reply(400, """{"error":"authorization_pending"}""") }
        val a = AuthorityClient(s.uri, HttpTransport())
        val d = DeviceAuthorization("dc", "U", "v", null, 60, 20)
        val t0 = System.nanoTime()
        val err = a.pollDeviceToken(d, Duration.ofMillis(500), TimeUnit.MILLISECONDS).failure()
        assertTrue(err.message!!.contains("timed out"), "got $err")
        assertTrue((System.nanoTime() - t0) / 1_000_000 < 5000)
    }

    @Test
    fun `token set survives a round trip through the store format`() {
        val t = TokenSet.fromTokenResponse(Json.parse(tokenJson(3)), MutableClock().instant())
        assertEquals(t, TokenSet.fromJson(t.toJson()))
        assertEquals(t.issuedAt.plusSeconds(80), t.refreshDueAt())
    }
}

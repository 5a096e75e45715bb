package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.time.Duration

/** The clients against the shared fake Orchestrator/Authority, the same server the VS Code tests use. */
class FakeServerContractTest {
    @BeforeEach fun reset() { FakeServer.reset() }

    private fun orchestrator(tm: BearerProvider = FakeServer.ciTokens(), http: HttpTransport = HttpTransport()) =
        OrchestratorClient(FakeServer.uri, http, tm)

    @Test
    fun `discovery finds the canonical token endpoint`() {
        val ep = FakeServer.authority().discover().await()
        assertTrue(ep.discovered)
        assertEquals("/token", ep.tokenEndpoint.path)
        assertEquals("/device_authorization", ep.deviceAuthorizationEndpoint!!.path)
    }

    @Test
    fun `releases, environments and promotions from the seed`() {
        val o = orchestrator()
        val releases = o.releases().await()
        assertEquals(listOf("rel-myapp-1.6.0-rc.1", "rel-myapp-1.5.0", "rel-myapp-1.4.2", "rel-myapp-1.4.1", "rel-myapp-1.3.0"), releases.map { it.id })
        assertEquals("ready", releases[1].status)
        val envs = o.environments().await()
        assertEquals(listOf("dev", "stage", "prod"), envs.map { it.name })
        assertTrue(envs[2].isProduction); assertEquals(2, envs[2].requiredApprovals)
        assertEquals("myapp v1.4.2", envs[1].currentRelease!!.name)
        val prm = o.promotions().await()
        assertEquals("prm-0001", prm.single().id); assertEquals("deployed", prm.single().status)
        assertEquals("client_credentials", FakeServer.requests().first { it.str("path") == "/token" }.str("grantType"))
    }

    @Test
    fun `releases filtered by project`() {
        assertEquals(5, orchestrator().releases("myapp").await().size)
        assertEquals(emptyList<Release>(), orchestrator().releases("other").await())
        assertTrue(FakeServer.requests().any { it.str("path") == "/api/v1/releases" && it.str("query") == "?project=other" })
    }

    @Test
    fun `all three envelope shapes give the same lists`() {
        val expected = orchestrator().environments().await()
        for (shape in listOf("bare", "data-meta")) {
            FakeServer.config("envelope" to shape)
            assertEquals(expected, orchestrator().environments().await(), shape)
            assertEquals(5, orchestrator().releases().await().size, shape)
        }
    }

    @Test
    fun `device code sign-in, then reads with the user's token`() {
        val store = InMemoryTokenStore()
        val tm = TokenManager(FakeServer.authority(clientId = "stella-ide", secret = null), store, "dev")
        var shown: DeviceAuthorization? = null
        val f = tm.signInWithDeviceCode({ d ->
            shown = d
            FakeServer.control("/device/approve", Json.obj("user_code" to d.userCode))
        }, Duration.ofSeconds(20))
        val t = f.await(30)
        assertTrue(shown!!.verificationUri.endsWith("/device"))
        assertNotNull(t.refreshToken)
        assertEquals(t, store.load("dev"))
        assertEquals(5, orchestrator(tm).releases().await().size)
    }

    @Test
    fun `device code denied`() {
        val tm = TokenManager(FakeServer.authority(clientId = "stella-ide", secret = null), InMemoryTokenStore(), "dev")
        val err = tm.signInWithDeviceCode({ d -> FakeServer.control("/device/deny", Json.obj("user_code" to d.userCode)) }).failure(30)
        assertEquals("access_denied", (err as ApiException).code)
    }

    @Test
    fun `an access token expired on the server is refreshed once and the call retried`() {
        val store = InMemoryTokenStore()
        val tm = TokenManager(FakeServer.authority(clientId = "stella-ide", secret = null), store, "dev")
        tm.signInWithDeviceCode({ d -> FakeServer.control("/device/approve", Json.obj("user_code" to d.userCode)) }).await(30)
        val before = store.load("dev")!!
        FakeServer.control("/tokens/expire", Json.obj())
        assertEquals(3, orchestrator(tm).environments().await().size)
        val after = store.load("dev")!!
        assertNotEquals(before.accessToken, after.accessToken)
        assertNotEquals(before.refreshToken, after.refreshToken, "refresh token rotated")
        val counters = FakeServer.state().get("counters")
        assertEquals(1, counters.int("refreshes")); assertEquals(1, counters.int("expiredRejected"))
    }

    @Test
    fun `legacy token endpoint when discovery is off, and its 410 after sunset`() {
        FakeServer.config("discovery" to false)
        val authority = FakeServer.authority()
        val tm = TokenManager(authority, InMemoryTokenStore(), "legacy", useClientCredentials = true)
        assertNull(authority.deprecation)
        assertEquals(5, orchestrator(tm).releases().await().size)
        assertTrue(authority.deprecation!!.contains("Deprecated endpoint"), authority.deprecation)
        assertTrue(FakeServer.requests().any { it.str("path") == "/oauth/token" && it.int("status") == 200 })
        FakeServer.config("legacyToken" to "gone")
        val err = orchestrator().releases().failure()
        assertEquals(410, (err as ApiException).status)
    }

    @Test
    fun `promotion with an operator token, followed to deployed`() {
        val tm = FakeServer.ciTokens()
        val o = orchestrator(tm)
        // a read token cannot promote
        val denied = o.promote("rel-myapp-1.5.0", "env-stage", "ship it").failure()
        assertEquals(403, (denied as ApiException).status); assertEquals("FORBIDDEN", denied.code)
        val p = o.promote("rel-myapp-1.5.0", "env-stage", "Sprint 45", "CHG-2001", tm.operatorBearer("Sprint 45", "CHG-2001")).await()
        assertEquals("pending", p.status); assertEquals("stage", p.targetEnvironmentName); assertEquals("dev", p.sourceEnvironmentName)
        assertEquals("Sprint 45", p.reason)
        val deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos()
        var cur = p
        while (!cur.isTerminal && System.nanoTime() < deadline) { Thread.sleep(100); cur = o.promotion(p.id).await() }
        assertEquals("deployed", cur.status)
        assertEquals("rel-myapp-1.5.0", o.environments().await().first { it.name == "stage" }.currentRelease!!.id)
        assertEquals("CHG-2001", FakeServer.state().get("promotions").first { it.str("id") == p.id }.str("ticket"))
    }

    @Test
    fun `an operator token and a routine refresh at the same time share the rotating refresh token`() {
        val store = InMemoryTokenStore()
        val tm = TokenManager(FakeServer.authority(clientId = "stella-ide", secret = null), store, "dev")
        tm.signInWithDeviceCode({ d -> FakeServer.control("/device/approve", Json.obj("user_code" to d.userCode)) }).await(30)
        tm.invalidate()
        val routine = tm.bearer()
        val operator = tm.operatorBearer("Sprint 46", "CHG-46").bearer()
        val again = tm.bearer()
        for (f in listOf(routine, operator, again)) assertTrue(f.await().startsWith("fake_at_"))
        assertNotNull(store.load("dev"), "still signed in")
        assertEquals(2, FakeServer.state().get("counters").int("refreshes"))
        assertEquals(0, FakeServer.requests().count { it.str("path") == "/token" && it.int("status") != 200 }, "no refresh token was used twice")
    }

    @Test
    fun `sign-out during a refresh leaves the user signed out`() {
        val store = InMemoryTokenStore()
        val tm = TokenManager(FakeServer.authority(clientId = "stella-ide", secret = null), store, "dev")
        tm.signInWithDeviceCode({ d -> FakeServer.control("/device/approve", Json.obj("user_code" to d.userCode)) }).await(30)
        tm.invalidate()
        FakeServer.config("latencyMs" to 300)
        val refresh = tm.bearer()
        val out = tm.signOut()
        refresh.await(); out.await()
        assertNull(store.load("dev"), "the refreshed tokens did not outlive the sign-out")
        FakeServer.config("latencyMs" to 0)
    }

    @Test
    fun `promotion errors carry the Orchestrator codes`() {
        val tm = FakeServer.ciTokens()
        val o = orchestrator(tm)
        val op = tm.operatorBearer("r", "T-1")
        assertEquals("PROMOTION_BLOCKED", (o.promote("rel-myapp-1.6.0-rc.1", "env-stage", "r", "T-1", op).failure() as ApiException).code)
        assertEquals("CONFLICT", (o.promote("rel-myapp-1.4.2", "env-stage", "r", "T-1", op).failure() as ApiException).code)
        assertEquals("NOT_FOUND", (o.promote("rel-nope", "env-stage", "r", "T-1", op).failure() as ApiException).code)
        val readonly = TokenManager(FakeServer.authority(clientId = "stella-readonly", secret = "readonly-secret"), InMemoryTokenStore(), "ro", useClientCredentials = true)
        assertEquals("invalid_scope", (readonly.operatorBearer("r", "T").bearer().failure() as ApiException).code)
    }

    @Test
    fun `offline - 503, reset and hang all fall back to stale data`() {
        val cache = OfflineCache()
        val http = HttpTransport(requestTimeout = Duration.ofMillis(800), connectTimeout = Duration.ofMillis(800))
        val tm = FakeServer.ciTokens(transport = http)
        val o = orchestrator(tm, http)
        val res = CachedResource.list("environments", cache, Environment::toJson, Environment::from) { c -> o.environments(c) }
        val fresh = res.load().await()
        assertFalse(fresh.stale)
        for (mode in listOf("503", "reset", "hang")) {
            FakeServer.down(mode)
            val t0 = System.nanoTime()
            val s = res.load().await()
            assertTrue(s.stale, mode); assertEquals(fresh.value, s.value, mode)
            assertTrue((System.nanoTime() - t0) / 1_000_000 < 5000, "$mode took too long")
            FakeServer.up()
        }
        assertFalse(res.load().await().stale)
    }

    @Test
    fun `429 carries Retry-After into the backoff`() {
        val o = orchestrator()
        o.releases().await()
        FakeServer.config("failNext" to Json.obj("pathPrefix" to "/api/v1/releases", "status" to 429, "count" to 1, "retryAfter" to 42))
        val err = o.releases().failure() as ApiException
        assertEquals(429, err.status); assertEquals("RATE_LIMITED", err.code); assertEquals(Duration.ofSeconds(42), err.retryAfter)
        assertEquals(Duration.ofSeconds(42), Backoff(Duration.ofSeconds(30)).nextDelay(1, err.retryAfter))
        assertEquals(5, o.releases().await().size)
    }

    @Test
    fun `sign-out revokes the refresh token`() {
        val store = InMemoryTokenStore()
        val tm = TokenManager(FakeServer.authority(clientId = "stella-ide", secret = null), store, "dev")
        val t = tm.signInWithDeviceCode({ d -> FakeServer.control("/device/approve", Json.obj("user_code" to d.userCode)) }).await(30)
        tm.signOut().await()
        assertNull(store.load("dev"))
        val err = FakeServer.authority(clientId = "stella-ide", secret = null).refresh(t.refreshToken!!).failure()
        assertEquals("invalid_grant", (err as ApiException).code)
        assertTrue(tm.bearer().failure() is NotSignedInException)
    }
}

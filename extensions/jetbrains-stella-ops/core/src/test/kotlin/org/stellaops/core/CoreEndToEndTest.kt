package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.time.Duration
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors

/** [StellaOpsCore] — what the tool window and status bar run on — against the fake Orchestrator and the real daemon. */
class CoreEndToEndTest {
    private val exec = Executors.newSingleThreadScheduledExecutor { r -> Thread(r, "stella-test-refresh").apply { isDaemon = true } }

    @org.junit.jupiter.api.AfterEach fun stop() { exec.shutdownNow() }

    private fun core(dir: Path, notices: MutableList<String>, timeout: Long = 2) = StellaOpsCore(
        StellaSettings(
            serverUrl = FakeServer.uri.toString(), clientId = "stella-ci", clientSecret = "stella-ci-secret",
            useClientCredentials = true, project = "myapp", integrationsUrl = DaemonTest.url.toString(), requestTimeoutSeconds = timeout,
        ),
        InMemoryTokenStore(), dir.resolve("cache.json"), exec, { notices += it },
        integrationsBearer = StaticBearer(DaemonTest.key),
    )

    @Test
    fun `connected, then offline with stale data and one notice, then back`(@TempDir dir: Path) {
        FakeServer.reset()
        DaemonTest.seed(2)
        val notices = CopyOnWriteArrayList<String>()
        val core = core(dir, notices)
        try {
            val s1 = core.refresh().await()
            assertEquals(ConnectionState.CONNECTED, s1.connection, s1.message)
            assertEquals(5, s1.releases!!.value.size)
            assertTrue(FakeServer.requests().any { it.str("path") == "/api/v1/releases" && it.str("query") == "?project=myapp" })
            assertEquals(listOf("dev", "stage", "prod"), s1.environments!!.value.map { it.name })
            assertEquals(1, s1.deployments!!.value.size)
            assertTrue(s1.integrations!!.value.size >= 2)
            assertTrue(s1.statusText.startsWith("Stella ✓ "), s1.statusText)
            assertEquals("myapp v1.4.2", core.environmentSummary("stage"))

            FakeServer.down("reset")
            repeat(3) {
                val s = core.refresh().await()
                assertEquals(ConnectionState.OFFLINE, s.connection)
                assertTrue(s.releases!!.stale); assertEquals(s1.releases!!.value, s.releases!!.value)
                assertFalse(s.integrations!!.stale, "the daemon is still up")
                assertTrue(s.statusText.startsWith("Stella: offline"), s.statusText)
            }
            assertEquals("myapp v1.4.2 (offline)", core.environmentSummary("stage"))
            assertEquals(1, notices.size, "one notice per outage: $notices")

            FakeServer.up()
            assertEquals(ConnectionState.CONNECTED, core.refresh().await().connection)
            assertEquals(2, notices.size)
        } finally { FakeServer.up(); core.dispose() }
    }

    @Test
    fun `last-known data survives a restart while the backend is down`(@TempDir dir: Path) {
        FakeServer.reset()
        val notices = CopyOnWriteArrayList<String>()
        core(dir, notices).apply { refresh().await(); dispose() }
        FakeServer.down("503")
        try {
            val restarted = core(dir, notices)
            assertEquals(5, restarted.state.releases!!.value.size, "shown from the cache before any fetch")
            val s = restarted.refresh().await()
            assertEquals(ConnectionState.OFFLINE, s.connection)
            assertEquals(5, s.releases!!.value.size)
            restarted.dispose()
        } finally { FakeServer.up() }
    }

    @Test
    fun `signed out of the Authority, integration health still shows with the daemon's API key`(@TempDir dir: Path) {
        DaemonTest.seed(1)
        val core = StellaOpsCore(
            StellaSettings(serverUrl = FakeServer.uri.toString(), integrationsUrl = DaemonTest.url.toString()),
            InMemoryTokenStore(), null, exec, {}, integrationsBearer = StaticBearer(DaemonTest.key),
        )
        try {
            val s = core.refresh().await()
            assertEquals(ConnectionState.SIGNED_OUT, s.connection)
            assertNull(s.releases)
            assertTrue(s.integrations!!.value.isNotEmpty())
            assertEquals("Stella: sign in", s.statusText)
        } finally { core.dispose() }
    }

    @Test
    fun `a refresh superseded by a newer one publishes nothing`(@TempDir dir: Path) {
        FakeServer.reset()
        val published = CopyOnWriteArrayList<ViewState>()
        val core = core(dir, CopyOnWriteArrayList(), timeout = 5)
        try {
            core.refresh().await()
            core.addListener { published += it }
            published.clear()
            FakeServer.config("latencyMs" to 1500)
            val first = core.refresh()
            Thread.sleep(200)
            val second = core.refresh()
            first.await(); val s2 = second.await()
            assertEquals(1, published.size, "only the second refresh is published")
            assertEquals(ConnectionState.CONNECTED, s2.connection)
            assertFalse(s2.releases!!.stale)
        } finally { FakeServer.config("latencyMs" to 0); core.dispose() }
    }

    @Test
    fun `promote by environment name from stella yaml`(@TempDir dir: Path) {
        FakeServer.reset()
        val core = core(dir, CopyOnWriteArrayList())
        try {
            val p = core.promote("rel-myapp-1.5.0", "prod", "Release train 46", "CHG-46").await()
            assertEquals("env-prod", p.targetEnvironmentId); assertEquals("pending", p.status)
            val err = core.promote("rel-myapp-1.5.0", "qa", "r", "T").failure()
            assertTrue(err.message!!.contains("unknown environment"))
        } finally { core.dispose() }
    }

    @Test
    fun `the periodic refresh runs once started`(@TempDir dir: Path) {
        FakeServer.reset()
        val states = CopyOnWriteArrayList<ConnectionState>()
        val exec = Executors.newSingleThreadScheduledExecutor()
        val core = StellaOpsCore(
            StellaSettings(serverUrl = FakeServer.uri.toString(), clientId = "stella-ci", clientSecret = "stella-ci-secret", useClientCredentials = true, refreshIntervalSeconds = 5, requestTimeoutSeconds = 1),
            InMemoryTokenStore(), null, exec, {},
        )
        try {
            core.addListener { states += it.connection }
            core.start()
            val deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos()
            while (ConnectionState.CONNECTED !in states && System.nanoTime() < deadline) Thread.sleep(50)
            assertTrue(ConnectionState.CONNECTED in states, "$states")
            assertNull(core.integrationsClient, "no daemon configured, no integrations part")
            assertNull(core.state.integrations)
        } finally { core.dispose(); exec.shutdownNow() }
    }
}

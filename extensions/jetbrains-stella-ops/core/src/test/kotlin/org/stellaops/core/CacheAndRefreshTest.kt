package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.time.Duration
import java.util.concurrent.CompletableFuture
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicInteger

class CacheAndRefreshTest {
    private fun releases(online: AtomicBoolean, calls: AtomicInteger = AtomicInteger()): (Cancellation?) -> CompletableFuture<List<Release>> = {
        calls.incrementAndGet()
        if (online.get()) CompletableFuture.completedFuture(listOf(Release("r1", "myapp v1", "1", null, "ready", null)))
        else CompletableFuture.failedFuture(OfflineException("http://127.0.0.1:1", java.net.ConnectException("refused")))
    }

    @Test
    fun `last-known data is returned stale when the backend is unreachable`(@TempDir dir: Path) {
        val online = AtomicBoolean(true)
        val cache = OfflineCache(dir.resolve("cache.json"))
        val res = CachedResource.list("releases", cache, Release::toJson, Release::from, releases(online))
        val fresh = res.load().await()
        assertFalse(fresh.stale); assertEquals("r1", fresh.value.single().id)
        online.set(false)
        val stale = res.load().await()
        assertTrue(stale.stale); assertEquals(fresh.value, stale.value); assertNotNull(stale.error)
        // persisted: a new cache instance (IDE restart) has the same data
        val again = CachedResource.list("releases", OfflineCache(dir.resolve("cache.json")), Release::toJson, Release::from, releases(online))
        assertEquals(fresh.value, again.cached()!!.value)
    }

    @Test
    fun `without cached data the offline error reaches the caller`() {
        val res = CachedResource.list("releases", OfflineCache(), Release::toJson, Release::from, releases(AtomicBoolean(false)))
        assertTrue(res.load().failure() is OfflineException)
    }

    @Test
    fun `a client error is not hidden behind stale data`() {
        val cache = OfflineCache()
        val ok = AtomicBoolean(true)
        val res = CachedResource.list("releases", cache, Release::toJson, Release::from) {
            if (ok.get()) CompletableFuture.completedFuture(listOf(Release("r1", "n", null, null, null, null)))
            else CompletableFuture.failedFuture(ApiException(403, "FORBIDDEN", "no"))
        }
        res.load().await(); ok.set(false)
        assertEquals(403, (res.load().failure() as ApiException).status)
    }

    @Test
    fun `models round-trip through the cache format`() {
        val env = Environment("e", "prod", "Production", 2, true, 2, true, CurrentRelease("r", "myapp v1", "2026-01-01T00:00:00Z"))
        assertEquals(env, Environment.from(env.toJson()))
        val i = Integration("i", "t", "inmemory", "n", Json.obj("a" to 1), null, HealthStatus.DEGRADED, "slow", null, 3, null, null)
        assertEquals(i, Integration.from(i.toJson()))
        val p = Promotion("p", "r", "rn", null, null, "e", "en", "pending", "me", "2026", "why")
        assertEquals(p, Promotion.from(p.toJson()))
    }

    @Test
    fun `backoff doubles up to the cap and honours Retry-After`() {
        val b = Backoff(Duration.ofSeconds(30), Duration.ofSeconds(2), Duration.ofSeconds(60))
        assertEquals(Duration.ofSeconds(30), b.nextDelay(0))
        assertEquals(listOf(2L, 4L, 8L, 16L, 32L, 60L, 60L), (1..7).map { b.nextDelay(it).seconds })
        assertEquals(Duration.ofSeconds(45), b.nextDelay(1, Duration.ofSeconds(45)))
        assertEquals(Duration.ofSeconds(4), b.nextDelay(2, Duration.ofSeconds(1)))
    }

    @Test
    fun `scheduler backs off after failures and returns to the interval`() {
        val exec = Executors.newSingleThreadScheduledExecutor()
        try {
            val times = java.util.concurrent.CopyOnWriteArrayList<Long>()
            val outcomes = java.util.concurrent.CopyOnWriteArrayList<Boolean>()
            val n = AtomicInteger()
            val done = java.util.concurrent.CountDownLatch(5)
            val sched = RefreshScheduler(exec, Backoff(Duration.ofMillis(50), Duration.ofMillis(100), Duration.ofMillis(400)), {
                times += System.nanoTime()
                if (n.incrementAndGet() in 2..3) CompletableFuture.failedFuture<Unit>(OfflineException("x", null))
                else CompletableFuture.completedFuture(Unit)
            }, { err -> outcomes += (err == null); done.countDown() })
            sched.start()
            assertTrue(done.await(10, TimeUnit.SECONDS))
            sched.stop()
            assertEquals(listOf(true, false, false, true, true), outcomes.take(5))
            val gaps = times.zipWithNext { a, b -> (b - a) / 1_000_000 }
            // success → 50 ms, failure 1 → 100 ms, failure 2 → 200 ms, success → 50 ms.
            // A scheduled task never runs early, so the lower bounds are exact; the upper bounds allow a loaded machine.
            assertTrue(gaps[0] >= 45 && gaps[1] >= 95 && gaps[2] >= 195 && gaps[3] >= 45, "gaps $gaps")
            assertTrue(gaps.all { it < 3000 }, "gaps $gaps")
            assertTrue(gaps[3] < gaps[2], "back to the interval after a success: $gaps")
            val after = n.get(); Thread.sleep(200)
            assertEquals(after, n.get(), "stopped scheduler runs no more")
        } finally { exec.shutdownNow() }
    }

    @Test
    fun `one notice per outage and one when back`() {
        val notices = mutableListOf<String>()
        val n = OfflineNotifier { notices += it }
        n.update(ConnectionState.CONNECTED)
        repeat(5) { n.update(ConnectionState.OFFLINE, "connection refused") }
        n.update(ConnectionState.CONNECTED); n.update(ConnectionState.CONNECTED)
        assertEquals(2, notices.size, "$notices")
        assertTrue(notices[0].contains("unreachable")); assertTrue(notices[1].contains("again"))
    }

    @Test
    fun `status bar text`() {
        val h = HealthSummary.of(listOf(
            Integration("a", null, "t", "a", Json.obj(), null, HealthStatus.HEALTHY, null, null, null, null, null),
            Integration("b", null, "t", "b", Json.obj(), null, HealthStatus.UNHEALTHY, "down", null, null, null, null),
            Integration("c", null, "t", "c", Json.obj(), null, HealthStatus.ERROR, "x", null, null, null, null),
            Integration("d", null, "t", "d", Json.obj(), null, HealthStatus.UNKNOWN, null, null, null, null, null),
        ))
        assertEquals("Stella ✓ 1 ✗ 2", statusText(ConnectionState.CONNECTED, h))
        assertEquals("Stella: offline (✓ 1 ✗ 2)", statusText(ConnectionState.OFFLINE, h))
        assertEquals("Stella: sign in", statusText(ConnectionState.SIGNED_OUT, null))
    }
}

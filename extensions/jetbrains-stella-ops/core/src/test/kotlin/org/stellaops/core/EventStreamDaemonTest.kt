package org.stellaops.core

import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.net.InetSocketAddress
import java.time.Duration
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors

/**
 * The event stream client and the health tracker against the real daemon (started by ci.sh with
 * `unhealthy_after = 1`, `healthy_after = 1` and reminders every second), through a [DropProxy] where a
 * connection must be cut. Every wait is bounded; everything is on loopback.
 */
class EventStreamDaemonTest {
    private val exec = Executors.newScheduledThreadPool(2) { r -> Thread(r, "stella-test-stream").apply { isDaemon = true } }
    private val closers = ArrayList<() -> Unit>()

    @AfterEach fun cleanUp() {
        closers.reversed().forEach { runCatching { it() } }
        exec.shutdownNow()
    }

    private val fast = ReconnectPolicy(initialMs = 100, maxMs = 800, jitter = 0.0, unsupportedRetryMs = 60_000)

    /** A stream client feeding a tracker, with everything it received and every status it went through. */
    inner class Harness(base: java.net.URI, follow: FollowSettings = FollowSettings(FollowMode.ALL), policy: ReconnectPolicy = fast, key: String = DaemonTest.key, position: () -> String? = { null }) {
        val tracker = HealthTracker(follow)
        val got = CopyOnWriteArrayList<SseMessage>()
        val notes = CopyOnWriteArrayList<HealthNotification>()
        val statuses = CopyOnWriteArrayList<Pair<Long, StreamStatus>>()
        val opened = CopyOnWriteArrayList<Boolean>()
        var forgot = 0
        private var override: (() -> String?)? = position
        val client = EventStreamClient(
            base, HttpTransport(), StaticBearer(key), exec,
            lastEventId = { override?.invoke()?.also { override = null } ?: tracker.lastEventId },
            onMessages = { ms -> got += ms; ms.forEach { tracker.applyMessage(it) }; notes += tracker.drain() },
            onOpen = { opened += it },
            onForgetPosition = { forgot++; tracker.forgetPosition() },
            onStatus = { statuses += System.nanoTime() to it },
            policy = policy,
            connectTimeout = Duration.ofSeconds(3),
        ).also { c -> closers += { c.stop() } }

        fun awaitLive(seconds: Long = 10) = waitUntil("stream live", seconds) { client.isLive }
        fun status(id: String) = tracker.entry(id)?.status
        fun ids() = got.map { it.id }
    }

    private fun waitUntil(what: String, seconds: Long = 10, f: () -> Boolean) {
        val end = System.nanoTime() + Duration.ofSeconds(seconds).toNanos()
        while (!f()) {
            if (System.nanoTime() > end) throw AssertionError("timed out after $seconds s waiting for $what")
            Thread.sleep(20)
        }
    }

    private fun proxy(): DropProxy = DropProxy(InetSocketAddress("127.0.0.1", DaemonTest.url.port)).also { p -> closers += { p.close() } }

    private fun newIntegration(behaviour: String = "healthy") = DaemonTest.seed(1, behaviour, "jb-ev-${UUID.randomUUID().toString().take(8)}").single()

    /** Sets the in-memory integration's behaviour and checks it now: the daemon decides its new status. */
    private fun makeStatus(i: Integration, behaviour: String): HealthCheckResult {
        DaemonTest.client().json("PUT", "/api/v1/integrations/${i.id}", Json.obj("name" to i.name, "config" to Json.obj("behaviour" to behaviour))).await()
        return DaemonTest.client().healthCheck(i.id).await()
    }

    @Test
    fun `a status change reaches the tracker within 2 s of the hub deciding it`() {
        val h = Harness(DaemonTest.url)
        h.client.start()
        h.awaitLive()
        assertEquals(listOf(false), h.opened, "a first connection starts at the next event")
        val x = newIntegration()
        assertEquals(HealthStatus.HEALTHY, DaemonTest.client().healthCheck(x.id).await().status)
        waitUntil("x healthy") { h.status(x.id) == "healthy" }
        assertEquals(HealthStatus.UNHEALTHY, makeStatus(x, "unhealthy").status)
        val t0 = System.nanoTime()
        waitUntil("x unhealthy", 2) { h.status(x.id) == "unhealthy" }
        val ms = (System.nanoTime() - t0) / 1_000_000
        assertTrue(ms <= 2000, "took $ms ms")
        assertEquals("provider_degraded", h.tracker.entry(x.id)!!.statusReason)
    }

    @Test
    fun `resume after a dropped connection - exactly the missed events, in order, once`() {
        val p = proxy()
        val h = Harness(p.uri)
        val x = newIntegration()
        h.tracker.applyList(DaemonTest.client().all().await()) // names x: its notifications need its name
        h.client.start()
        h.awaitLive()
        DaemonTest.client().healthCheck(x.id).await()
        waitUntil("x healthy over the stream") { h.status(x.id) == "healthy" }
        val position = h.tracker.lastEventId!!

        // The network goes: open connections die, new ones fail. Meanwhile x fails and recovers.
        p.refuse = true
        p.dropAll()
        waitUntil("the client noticed") { h.client.status is StreamStatus.Retrying }
        assertEquals(HealthStatus.UNHEALTHY, makeStatus(x, "unhealthy").status)
        assertEquals(HealthStatus.HEALTHY, makeStatus(x, "healthy").status)
        val missed = DropProxy.daemonEventsAfter(DaemonTest.url, DaemonTest.key, position)
        val xs = missed.filter { it["integrationId"] == x.id }.map { it["status"] }
        assertEquals(listOf("unhealthy", "healthy"), xs, "the daemon's log holds both changes: $missed")
        assertEquals(position, h.tracker.lastEventId, "nothing arrived while cut off")

        p.refuse = false
        waitUntil("the missed events delivered", 15) { missed.all { m -> m["id"] in h.ids() } }
        val resume = p.eventRequests().last()
        assertEquals(position, DropProxy.header(resume, "Last-Event-ID"), "resumed from the last event received:\n$resume")
        val after = h.ids().dropWhile { it != position }.drop(1)
        assertEquals(missed.map { it["id"] }, after.take(missed.size), "exactly the missed events first, in order")
        assertEquals(h.ids().size, h.ids().toSet().size, "no event twice: ${h.ids()}")
        assertEquals("healthy", h.status(x.id))
        assertEquals(listOf(false, true), h.opened.toList().takeLast(2))
        // The one unhealthy episode of x while away was told once, from the replay.
        assertEquals(1, h.notes.count { it is HealthNotification.IntegrationFailing && it.integrationId == x.id })
    }

    @Test
    fun `back-off - refused connections are retried after 100, 200, 400, 800, 800 ms, and a delivered message starts the count again`() {
        val p = proxy()
        p.refuse = true
        val h = Harness(p.uri)
        h.client.start()
        waitUntil("six attempts", 10) { h.statuses.count { it.second is StreamStatus.Connecting } >= 6 }
        val retrying = h.statuses.map { it.second }.filterIsInstance<StreamStatus.Retrying>().take(5)
        assertEquals(listOf(100L, 200L, 400L, 800L, 800L), retrying.map { it.inMs })
        val connecting = h.statuses.filter { it.second is StreamStatus.Connecting }.map { it.first }.take(6)
        val gaps = connecting.zipWithNext { a, b -> (b - a) / 1_000_000 }
        listOf(100L, 200L, 400L, 800L, 800L).zip(gaps).forEach { (want, got) ->
            assertTrue(got >= want - 5 && got < want + 400, "gap $got ms, expected about $want ms (gaps $gaps)")
        }
        assertTrue(p.accepted.size >= 6, "every attempt reached the network: ${p.accepted.size}")

        p.refuse = false
        h.awaitLive()
        val x = newIntegration()
        DaemonTest.client().healthCheck(x.id).await()
        waitUntil("a message") { h.status(x.id) == "healthy" }
        p.dropAll()
        waitUntil("retrying") { h.client.status is StreamStatus.Retrying }
        assertEquals(100L, (h.client.status as StreamStatus.Retrying).inMs, "the count started again")
    }

    @Test
    fun `de-duplication - one notification per status change despite reminders, an overlapping replay and a poll`() {
        val x = newIntegration()
        DaemonTest.client().healthCheck(x.id).await()
        val h = Harness(DaemonTest.url, FollowSettings(FollowMode.PINNED, pinned = listOf(x.name)))
        h.tracker.applyList(DaemonTest.client().all().await())
        h.client.start()
        h.awaitLive()
        // A position the tracker holds: the first event after the stream opened.
        val y = newIntegration()
        DaemonTest.client().healthCheck(y.id).await()
        waitUntil("y over the stream") { h.status(y.id) == "healthy" }
        val before = h.tracker.lastEventId!!

        makeStatus(x, "unhealthy")
        waitUntil("x unhealthy") { h.status(x.id) == "unhealthy" }
        val reminders = { h.got.count { m -> Json.parse(m.data).let { it.text("type") == "dev.stellaops.integration.health.reminder" && it.get("data").text("integrationId") == x.id } } }
        waitUntil("two reminders for x", 10) { reminders() >= 2 }
        fun told() = h.notes.filterIsInstance<HealthNotification.IntegrationFailing>().filter { it.integrationId == x.id }
        assertEquals(1, told().size, "${h.notes}")
        assertEquals("provider_degraded", told().single().reason)

        // The same events again: a second connection resuming from before the failure, into the same tracker.
        val position = h.tracker.lastEventId!!
        val overlap = h.ids().filter { it!!.toLong() > before.toLong() && it.toLong() <= position.toLong() }
        assertTrue(overlap.size >= 3, "the failure and two reminders: $overlap")
        val replayed = CopyOnWriteArrayList<String?>()
        val replay = EventStreamClient(
            DaemonTest.url, HttpTransport(), StaticBearer(DaemonTest.key), exec,
            lastEventId = { before },
            onMessages = { ms -> replayed += ms.map { it.id }; ms.forEach { h.tracker.applyMessage(it) }; h.notes += h.tracker.drain() },
            policy = fast,
        ).also { c -> closers += { c.stop() } }
        val resyncs = h.tracker.resyncRequests
        replay.start()
        waitUntil("the replay delivered the overlap") { replayed.containsAll(overlap) }
        replay.stop()
        assertTrue(h.tracker.lastEventId!!.toLong() >= position.toLong(), "the position never goes back")
        assertEquals(1, told().size, "the replay told nothing again")
        assertEquals(resyncs, h.tracker.resyncRequests, "a replay of known events is not mistaken for a new log")

        // A poll that finds x unhealthy too.
        h.tracker.applyList(DaemonTest.client().all().await())
        h.notes += h.tracker.drain()
        assertEquals(1, told().size)

        // Not over-suppressed: recovering and failing again is a new status change.
        makeStatus(x, "healthy")
        waitUntil("x healthy") { h.status(x.id) == "healthy" }
        makeStatus(x, "unhealthy")
        waitUntil("told again") { told().size == 2 }
    }

    @Test
    fun `a position the daemon refuses (422) is forgotten and the stream starts afresh`() {
        val h = Harness(DaemonTest.url, position = { "not-an-id" })
        h.client.start()
        h.awaitLive()
        assertEquals(1, h.forgot)
        assertEquals(listOf(false), h.opened.toList())
    }

    @Test
    fun `a refused key (401) is not hammered`() {
        val h = Harness(DaemonTest.url, key = "not-a-key")
        h.client.start()
        waitUntil("unauthorized") { h.client.status is StreamStatus.Unauthorized }
        Thread.sleep(500)
        assertEquals(1, h.statuses.count { it.second is StreamStatus.Connecting })
        assertTrue((h.client.status as StreamStatus.Unauthorized).error.contains("answered 401"))
    }

    @Test
    fun `stop closes the stream and makes no further requests`() {
        val p = proxy()
        val h = Harness(p.uri)
        h.client.start()
        h.awaitLive()
        h.client.stop()
        val n = p.eventRequests().size
        Thread.sleep(400)
        assertEquals(n, p.eventRequests().size)
        h.client.reconnectNow()
        Thread.sleep(200)
        assertEquals(n, p.eventRequests().size, "a stopped client stays stopped")
        assertEquals(StreamStatus.Stopped, h.client.status)
    }
}

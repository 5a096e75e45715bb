package org.stellaops.core

import java.io.IOException
import java.net.HttpURLConnection
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.net.SocketTimeoutException
import java.net.URI
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors

/**
 * A TCP pass-through on loopback in front of the daemon, to cut connections the way a network does:
 * [dropAll] kills every open connection (no clean end), [refuse] accepts and closes new ones at once.
 * It records when connections were accepted and the request heads clients sent.
 */
class DropProxy(private val target: InetSocketAddress) : AutoCloseable {
    private val server = ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"))
    private val pool = Executors.newCachedThreadPool { r -> Thread(r, "drop-proxy").apply { isDaemon = true } }
    private val open = CopyOnWriteArrayList<Socket>()

    /** Accept and close new connections at once. */
    @Volatile var refuse = false
    /** System.nanoTime() of every accepted connection. */
    val accepted = CopyOnWriteArrayList<Long>()
    /** Request heads (request line and headers) in the order sent. */
    val requests = CopyOnWriteArrayList<String>()

    val uri: URI get() = URI.create("http://127.0.0.1:${server.localPort}")

    init {
        pool.execute {
            while (!server.isClosed) {
                val c = try { server.accept() } catch (e: IOException) { break }
                accepted += System.nanoTime()
                if (refuse) { runCatching { c.close() }; continue }
                val up = Socket()
                try { up.connect(target, 2000) } catch (e: IOException) { runCatching { c.close() }; continue }
                open += c; open += up
                pool.execute { pipe(c, up, record = true) }
                pool.execute { pipe(up, c, record = false) }
            }
        }
    }

    private fun pipe(from: Socket, to: Socket, record: Boolean) {
        val buf = ByteArray(16 * 1024)
        try {
            val i = from.getInputStream()
            val o = to.getOutputStream()
            while (true) {
                val n = i.read(buf)
                if (n < 0) break
                if (record) {
                    val text = String(buf, 0, n, Charsets.ISO_8859_1)
                    if (Regex("^(GET|POST|PUT|DELETE|HEAD) ").containsMatchIn(text)) requests += text.substringBefore("\r\n\r\n")
                }
                o.write(buf, 0, n)
                o.flush()
            }
        } catch (e: IOException) {
        } finally {
            runCatching { from.close() }; runCatching { to.close() }
            open -= from; open -= to
        }
    }

    /** Event stream requests (their heads). */
    fun eventRequests(): List<String> = requests.filter { it.startsWith("GET /api/v1/events") }

    /** Integration list reads. */
    fun listReads(): Int = requests.count { it.startsWith("GET /api/v1/integrations?") || it.startsWith("GET /api/v1/integrations ") }

    /** Kills every open connection, as a network failure does. */
    fun dropAll() {
        for (s in open) runCatching { s.close() }
        open.clear()
    }

    override fun close() {
        runCatching { server.close() }
        dropAll()
        pool.shutdownNow()
    }

    companion object {
        fun header(head: String, name: String): String? =
            head.lineSequence().firstOrNull { it.startsWith("$name:", ignoreCase = true) }?.substringAfter(':')?.trim()

        /**
         * The daemon's events after [after], read directly (not through the code under test) with a plain
         * connection for [millis]: (id, type, integrationId, status).
         */
        fun daemonEventsAfter(base: URI, key: String, after: String, millis: Int = 1200): List<Map<String, String?>> {
            val c = base.resolvePath("/api/v1/events?after=$after").toURL().openConnection() as HttpURLConnection
            c.setRequestProperty("Authorization", "Bearer $key")
            c.setRequestProperty("Accept", "text/event-stream")
            c.connectTimeout = 2000
            c.readTimeout = millis
            val text = StringBuilder()
            try {
                c.inputStream.bufferedReader().use { r ->
                    val end = System.currentTimeMillis() + millis
                    while (System.currentTimeMillis() < end) text.append(r.readLine() ?: break).append('\n')
                }
            } catch (e: SocketTimeoutException) {
            } finally { c.disconnect() }
            return SseParser().push(text.toString() + "\n").map { m ->
                val ce = Json.parse(m.data)
                mapOf("id" to m.id, "type" to ce.text("type"), "integrationId" to ce.get("data").text("integrationId"), "status" to ce.get("data").text("status"))
            }
        }
    }
}

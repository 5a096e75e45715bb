package org.stellaops.core

import java.nio.ByteBuffer
import java.nio.CharBuffer
import java.nio.charset.CharsetDecoder
import java.nio.charset.CodingErrorAction
import java.nio.charset.StandardCharsets

/** One server-sent event: [id] is the last event ID at dispatch (this message's `id:`, or the one before it). */
data class SseMessage(val id: String?, val event: String, val data: String)

/**
 * Server-sent events parsing (WHATWG HTML "event stream interpretation"), fed with text as it arrives; a chunk
 * may end anywhere, even between `\r` and `\n`. One parser per connection. Shared contract:
 * `extensions/fixtures/events` (the TypeScript `SseParser` passes the same cases).
 */
class SseParser(lastEventId: String? = null) {
    private val partial = StringBuilder()
    private val data = ArrayList<String>()
    private var eventType = ""
    private var idBuffer: String? = lastEventId
    private var lastWasCR = false
    private var started = false
    private var broken = false

    /** The stream's last `retry:`, in milliseconds. */
    var retryMs: Long? = null
        private set

    fun push(chunk: String): List<SseMessage> {
        var text = chunk
        if (!started && text.isNotEmpty()) {
            started = true
            if (text[0] == '\uFEFF') text = text.substring(1)
        }
        if (lastWasCR && text.startsWith("\n")) text = text.substring(1)
        if (text.isNotEmpty()) lastWasCR = false
        val out = ArrayList<SseMessage>()
        var start = 0
        var i = 0
        while (i < text.length) {
            val c = text[i]
            if (c == '\n' || c == '\r') {
                partial.append(text, start, i)
                val line = partial.toString()
                partial.setLength(0)
                line(line, out)
                if (c == '\r') {
                    if (i + 1 < text.length) {
                        if (text[i + 1] == '\n') i++
                    } else lastWasCR = true
                }
                start = i + 1
            }
            i++
        }
        partial.append(text, start, text.length)
        if (partial.length > MAX_LINE) {
            partial.setLength(0)
            broken = true
        }
        return out
    }

    private fun line(line: String, out: MutableList<SseMessage>) {
        if (line.isEmpty()) return dispatch(out)
        if (line[0] == ':') return
        val colon = line.indexOf(':')
        val field = if (colon < 0) line else line.substring(0, colon)
        var value = if (colon < 0) "" else line.substring(colon + 1)
        if (value.startsWith(" ")) value = value.substring(1)
        when (field) {
            "event" -> eventType = value
            "data" -> data += value
            "id" -> if (!value.contains('\u0000')) idBuffer = value
            "retry" -> if (value.isNotEmpty() && value.all { it in '0'..'9' }) retryMs = value.toLongOrNull()
        }
    }

    private fun dispatch(out: MutableList<SseMessage>) {
        val lines = ArrayList(data)
        val type = eventType
        val wasBroken = broken
        data.clear()
        eventType = ""
        broken = false
        if (lines.isEmpty() || wasBroken) return
        out += SseMessage(idBuffer, type.ifEmpty { "message" }, lines.joinToString("\n"))
    }

    companion object {
        /** Longest line kept (1 MiB): a longer one is dropped with its message. */
        const val MAX_LINE = 1 shl 20
    }
}

/** UTF-8 decoding of a byte stream whose chunks may split a character. */
class Utf8Stream {
    private val decoder: CharsetDecoder = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPLACE).onUnmappableCharacter(CodingErrorAction.REPLACE)
    private var leftover: ByteBuffer = ByteBuffer.allocate(0)

    fun decode(bytes: ByteBuffer): String {
        val input = if (leftover.hasRemaining()) {
            ByteBuffer.allocate(leftover.remaining() + bytes.remaining()).put(leftover).put(bytes).flip() as ByteBuffer
        } else bytes
        val out = CharBuffer.allocate((input.remaining() * decoder.maxCharsPerByte().toDouble()).toInt() + 2)
        decoder.decode(input, out, false)
        leftover = if (input.hasRemaining()) ByteBuffer.allocate(input.remaining()).put(input).flip() as ByteBuffer else ByteBuffer.allocate(0)
        out.flip()
        return out.toString()
    }
}

package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import java.time.OffsetDateTime

/** Which integrations raise notifications. */
enum class FollowMode(val wire: String) {
    /** Named in the project's stella.yaml `integrations:`, plus the pinned ones. */
    REFERENCED("referenced"),
    PINNED("pinned"),
    ALL("all");

    companion object {
        fun of(s: String?): FollowMode = entries.firstOrNull { it.wire == s } ?: REFERENCED
    }
}

data class FollowSettings(
    val follow: FollowMode = FollowMode.REFERENCED,
    val muted: Boolean = false,
    /** Names or ids. */
    val pinned: List<String> = emptyList(),
    /** Names or ids from stella.yaml `integrations:`. */
    val referenced: List<String> = emptyList(),
)

/** What the tracker tells the user: an integration they follow went unhealthy, or an incident opened. */
sealed class HealthNotification {
    data class IntegrationFailing(
        val integrationId: String, val name: String, val type: String?, val status: String,
        val previousStatus: String, val reason: String?, val message: String?,
    ) : HealthNotification()

    data class Incident(
        val incidentId: String, val integrationIds: List<String>, val names: List<String>, val title: String?, val reason: String?,
    ) : HealthNotification()
}

/** One integration in the model. [name] is null until a list names it (events carry no name). */
data class HealthEntry(
    val id: String,
    val name: String?,
    val type: String?,
    val status: String,
    val statusReason: String?,
    val message: String?,
    val lastCheckedAt: String?,
    val flapping: Boolean?,
)

/** An assumed incident event (the hub emits none yet): see [HealthTracker.parseIncident]. */
data class IncidentEvent(val incidentId: String, val opened: Boolean, val integrationIds: List<String>, val title: String?, val reason: String?)

/**
 * The live model of integration status: fed by the hub's event stream (GET /api/v1/events, CloudEvents over SSE)
 * and by integration lists (first load, polling, resync). Decides the notifications: one per integration per
 * status change into unhealthy/error, one per incident, only for the integrations followed. Bounded. The rules
 * are the shared contract in `extensions/fixtures/README.md` ("Health events"); thread-safe.
 */
class HealthTracker(@Volatile private var settings: FollowSettings = FollowSettings(), maxIntegrations: Int = 5000, maxSeenEvents: Int = 1000) {
    private class Entry(val id: String) {
        var name: String? = null
        var type: String? = null
        var status: String = "unknown"
        var statusReason: String? = null
        var message: String? = null
        var lastCheckedAt: String? = null
        var flapping: Boolean? = null
        /** The check time (ms) of the event the status came from; a list older than this does not undo it. */
        var eventAt: Long? = null
        var item: Integration? = null
        var touched: Long = 0
    }

    private val maxIntegrations = maxOf(1, maxIntegrations)
    private val maxSeen = maxOf(1, maxSeenEvents)
    private var entries = LinkedHashMap<String, Entry>()
    private var clock = 0L
    private var listSeen = false
    private var position: String? = null
    private var lastSeq: Long? = null
    private val seen = HashSet<String>()
    private val seenOrder = ArrayDeque<String>()
    private val episodes = HashSet<String>()
    private val pending = LinkedHashSet<String>()
    private val incidents = LinkedHashMap<String, List<String>>()
    private val incidentOf = HashMap<String, String>()
    private val incidentsTold = HashSet<String>()
    private val incidentsToldOrder = ArrayDeque<String>()
    private val out = ArrayList<HealthNotification>()

    /** Times the tracker decided the list should be read again. */
    @get:Synchronized var resyncRequests = 0
        private set
    @get:Synchronized var needsResync = false
        private set

    fun setSettings(s: FollowSettings) { settings = s }

    /** The id to send as Last-Event-ID. */
    @get:Synchronized val lastEventId: String? get() = position

    @get:Synchronized val hasData: Boolean get() = listSeen || entries.isNotEmpty()

    @get:Synchronized val size: Int get() = entries.size

    @Synchronized fun entry(id: String): HealthEntry? = entries[id]?.let { HealthEntry(it.id, it.name, it.type, it.status, it.statusReason, it.message, it.lastCheckedAt, it.flapping) }

    @Synchronized fun openIncidents(): List<String> = incidents.keys.sorted()

    /** Notifications raised since the last call. */
    @Synchronized fun drain(): List<HealthNotification> = ArrayList(out).also { out.clear() }

    /** Forget the stream position (the hub refused it); the list is read again. */
    @Synchronized fun forgetPosition() {
        position = null
        lastSeq = null
        requestResync()
    }

    fun isFollowed(id: String, name: String?): Boolean {
        val s = settings
        if (s.follow == FollowMode.ALL) return true
        fun hit(l: List<String>) = id in l || (name != null && name in l)
        return hit(s.pinned) || (s.follow == FollowMode.REFERENCED && hit(s.referenced))
    }

    /** The model as integrations for the views: list items with the live status over them. */
    @Synchronized fun integrations(): List<Integration> = entries.values.map { e ->
        val base = e.item ?: Integration(e.id, null, e.type ?: "", e.id, Json.obj(), null, HealthStatus.UNKNOWN, null, null, null, null, null)
        base.copy(type = e.type ?: base.type, name = e.name ?: e.id, status = HealthStatus.of(e.status), statusReason = e.statusReason, lastCheckedAt = e.lastCheckedAt)
    }

    /** A full list (all pages). The first one ever is a silent baseline. */
    @Synchronized fun applyList(items: List<Integration>, rawStatus: (Integration) -> String = { it.status.wire }) {
        val baseline = !listSeen
        listSeen = true
        needsResync = false
        var keep = items
        if (items.size > maxIntegrations) {
            val kept = (items.filter { isFollowed(it.id, it.name) } + items.filterNot { isFollowed(it.id, it.name) }).take(maxIntegrations).toSet()
            keep = items.filter { it in kept }
        }
        val next = LinkedHashMap<String, Entry>()
        val changed = ArrayList<Pair<Entry, String>>()
        for (item in keep) {
            val old = entries[item.id]
            val e = old ?: Entry(item.id)
            val prev = old?.status ?: "unknown"
            e.name = item.name
            e.type = item.type
            e.item = item
            val listAt = timeMs(item.lastCheckedAt)
            val eventWins = e.eventAt != null && (listAt == null || listAt < e.eventAt!!)
            if (!eventWins) {
                val status = rawStatus(item)
                if (status != e.status) e.flapping = null
                e.status = status
                e.statusReason = item.statusReason
                e.message = null
                e.lastCheckedAt = item.lastCheckedAt
                e.eventAt = null
            }
            e.touched = ++clock
            next[item.id] = e
            if (!baseline && (old == null || prev != e.status)) changed += e to prev
        }
        for (id in entries.keys) if (id !in next) forget(id)
        entries = next
        if (baseline) for (e in entries.values) if (isFailing(e.status) && e.id !in pending) episodes += e.id
        for ((e, prev) in changed) transition(e, prev)
        for (id in ArrayList(pending)) {
            pending.remove(id)
            val e = entries[id] ?: continue
            if (e.name == null || !isFailing(e.status) || id in episodes) continue
            enterFailing(e, "unknown")
        }
    }

    /** One SSE message. Returns true when the model changed. */
    @Synchronized fun applyMessage(m: SseMessage): Boolean {
        val seq = m.id?.takeIf { it.isNotEmpty() && it.all { c -> c in '0'..'9' } }?.toLongOrNull()
        val ce: JsonNode? = try { Json.parse(m.data).takeIf { it.isObject } } catch (e: Exception) { null }
        val ceId = ce?.get("id")?.takeIf { it.isTextual }?.asText()
        if (ceId != null && ceId in seen) return false
        val behind = seq != null && lastSeq != null && seq <= lastSeq!!
        if (behind && ceId == null) return false
        if (behind) requestResync() // the hub's log started again
        if (m.id != null) {
            position = m.id
            if (seq != null) lastSeq = seq
        }
        if (ceId != null) remember(ceId)
        if (ce == null) return false
        parseIncident(ce)?.let { return applyIncident(it) }
        val type = ce.str("type") ?: return false
        if (type !in STATUS_EVENT_TYPES) return false
        return applyStatus(ce)
    }

    /** A health check's result for one integration ("Run health check"), as fresh as a list entry. */
    @Synchronized fun applyCheck(id: String, status: String, reason: String?, message: String?, checkedAt: String?): Boolean {
        val e = entries[id] ?: return false
        val at = timeMs(checkedAt)
        if (e.eventAt != null && at != null && at < e.eventAt!!) return false
        val prev = e.status
        e.status = status
        e.statusReason = reason
        e.message = message
        e.lastCheckedAt = checkedAt ?: e.lastCheckedAt
        e.eventAt = at
        e.touched = ++clock
        if (prev != status) transition(e, prev)
        return true
    }

    private fun applyStatus(ce: JsonNode): Boolean {
        val d = ce.node("data")?.takeIf { it.isObject } ?: Json.obj()
        val id = d.text("integrationId") ?: ce.text("subject") ?: return false
        val status = d.text("status") ?: return false
        var e = entries[id]
        val prev = e?.status ?: "unknown"
        if (e == null) {
            e = Entry(id).also { it.type = d.text("integrationType") }
            insert(e)
            requestResync()
        }
        e.status = status
        e.statusReason = d.text("reason")
        e.message = d.text("message")
        e.lastCheckedAt = d.text("checkedAt") ?: ce.text("time")
        d.get("flapping")?.takeIf { it.isBoolean }?.let { e.flapping = it.asBoolean() }
        e.eventAt = timeMs(d.text("checkedAt")) ?: timeMs(ce.text("time"))
        if (e.type == null) e.type = d.text("integrationType")
        e.touched = ++clock
        if (prev != status) transition(e, prev)
        return true
    }

    private fun applyIncident(i: IncidentEvent): Boolean {
        if (!i.opened) {
            val members = incidents.remove(i.incidentId) ?: i.integrationIds
            for (m in members) if (incidentOf[m] == i.incidentId) incidentOf.remove(m)
            return true
        }
        if (i.incidentId in incidents) return false
        if (incidents.size >= MAX_OPEN_INCIDENTS) {
            val oldest = incidents.keys.first()
            for (m in incidents.remove(oldest).orEmpty()) if (incidentOf[m] == oldest) incidentOf.remove(m)
        }
        incidents[i.incidentId] = i.integrationIds
        for (m in i.integrationIds) {
            incidentOf[m] = i.incidentId
            if (isFailing(entries[m]?.status)) episodes += m
            pending.remove(m)
        }
        if (!incidentsTold.add(i.incidentId)) return true
        incidentsToldOrder.addLast(i.incidentId)
        if (incidentsToldOrder.size > maxSeen) incidentsTold.remove(incidentsToldOrder.removeFirst())
        val followed = i.integrationIds.any { isFollowed(it, entries[it]?.name) }
        if (!settings.muted && followed) {
            out += HealthNotification.Incident(i.incidentId, i.integrationIds, i.integrationIds.map { entries[it]?.name ?: it }, i.title, i.reason)
        }
        return true
    }

    private fun transition(e: Entry, prev: String) {
        if (!isFailing(e.status)) {
            episodes.remove(e.id)
            pending.remove(e.id)
            return
        }
        if (e.id in episodes || e.id in pending) return // already failing (unhealthy ⇄ error is the same episode)
        if (e.id in incidentOf) {
            episodes += e.id // told as part of its incident
            return
        }
        if (e.name == null) {
            pending += e.id
            return
        }
        enterFailing(e, prev)
    }

    private fun enterFailing(e: Entry, prev: String) {
        episodes += e.id
        if (settings.muted || !isFollowed(e.id, e.name)) return
        out += HealthNotification.IntegrationFailing(e.id, e.name ?: e.id, e.type, e.status, prev, e.statusReason ?: e.message, e.message)
    }

    private fun requestResync() {
        if (!needsResync) resyncRequests++
        needsResync = true
    }

    private fun remember(ceId: String) {
        seen += ceId
        seenOrder.addLast(ceId)
        if (seenOrder.size > maxSeen) seen.remove(seenOrder.removeFirst())
    }

    /** Adds an entry, dropping the least recently updated one that is not followed when full. */
    private fun insert(e: Entry) {
        if (entries.size >= maxIntegrations) {
            val victim = entries.values.minWithOrNull(compareBy<Entry>({ isFollowed(it.id, it.name) }, { it.touched }))
            if (victim != null) {
                entries.remove(victim.id)
                forget(victim.id)
            }
        }
        entries[e.id] = e
    }

    private fun forget(id: String) {
        episodes.remove(id)
        pending.remove(id)
    }

    companion object {
        private const val MAX_OPEN_INCIDENTS = 100

        /** Event types whose `data.status` is the integration's status. */
        val STATUS_EVENT_TYPES = setOf(
            "dev.stellaops.integration.health.changed",
            "dev.stellaops.integration.health.recovered",
            "dev.stellaops.integration.health.reminder",
            "dev.stellaops.integration.health.flapping",
            "dev.stellaops.integration.plugin.crashloop",
        )

        fun isFailing(status: String?): Boolean = status == "unhealthy" || status == "error"

        /**
         * Incident events: not emitted by the hub yet (another issue). This is the one place that reads them; the
         * assumed shape is `….incident.opened` / `….incident.resolved` with `data.incidentId`, `data.integrationIds`,
         * optional `data.title` and `data.reason` (else `data.message`). Null for any other event.
         */
        fun parseIncident(ce: JsonNode): IncidentEvent? {
            val type = ce.text("type") ?: return null
            val opened = type.endsWith(".incident.opened")
            if (!opened && !type.endsWith(".incident.resolved")) return null
            val d = ce.node("data") ?: Json.obj()
            val id = d.text("incidentId") ?: return null
            val members = d.node("integrationIds")?.takeIf { it.isArray }?.filter { it.isTextual }?.map { it.asText() } ?: emptyList()
            return IncidentEvent(id, opened, members, d.text("title"), d.text("reason") ?: d.text("message"))
        }

        /** Milliseconds of an RFC 3339 time (fractions past milliseconds are cut), or null. */
        fun timeMs(v: String?): Long? {
            if (v.isNullOrBlank()) return null
            return try { OffsetDateTime.parse(v.trim()).toInstant().toEpochMilli() } catch (e: Exception) { null }
        }
    }
}

/** A string member of a JSON object, or null (not for numbers or objects, unlike [str]). */
fun JsonNode?.text(name: String): String? = this?.get(name)?.takeIf { it.isTextual }?.asText()

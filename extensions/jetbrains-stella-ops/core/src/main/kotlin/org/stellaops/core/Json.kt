package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import com.fasterxml.jackson.databind.ObjectMapper
import com.fasterxml.jackson.databind.node.ArrayNode
import com.fasterxml.jackson.databind.node.JsonNodeFactory
import com.fasterxml.jackson.databind.node.NullNode
import com.fasterxml.jackson.databind.node.ObjectNode

/** Small helpers over Jackson's tree model; the core keeps no reflection-based binding. */
object Json {
    val mapper: ObjectMapper = ObjectMapper()
    private val f = JsonNodeFactory.instance

    fun parse(text: String): JsonNode = mapper.readTree(text) ?: NullNode.instance
    fun write(node: JsonNode): String = mapper.writeValueAsString(node)

    fun obj(vararg pairs: Pair<String, Any?>): ObjectNode {
        val o = f.objectNode()
        for ((k, v) in pairs) o.set<JsonNode>(k, toNode(v))
        return o
    }

    fun arr(items: Iterable<Any?>): ArrayNode {
        val a = f.arrayNode()
        items.forEach { a.add(toNode(it)) }
        return a
    }

    fun toNode(v: Any?): JsonNode = when (v) {
        null -> NullNode.instance
        is JsonNode -> v
        is String -> f.textNode(v)
        is Int -> f.numberNode(v)
        is Long -> f.numberNode(v)
        is Double -> f.numberNode(v)
        is Boolean -> f.booleanNode(v)
        is Map<*, *> -> obj(*v.map { (k, x) -> k.toString() to x }.toTypedArray())
        is Iterable<*> -> arr(v)
        else -> f.textNode(v.toString())
    }
}

fun JsonNode?.str(name: String): String? {
    val n = this?.get(name) ?: return null
    return if (n.isNull || n.isMissingNode) null else if (n.isValueNode) n.asText() else n.toString()
}

fun JsonNode?.int(name: String): Int? {
    val n = this?.get(name) ?: return null
    return if (n.isNumber) n.asInt() else n.asText().toIntOrNull()
}

fun JsonNode?.long(name: String): Long? {
    val n = this?.get(name) ?: return null
    return if (n.isNumber) n.asLong() else n.asText().toLongOrNull()
}

fun JsonNode?.bool(name: String): Boolean? {
    val n = this?.get(name) ?: return null
    return if (n.isBoolean) n.asBoolean() else when (n.asText()) { "true" -> true; "false" -> false; else -> null }
}

fun JsonNode?.node(name: String): JsonNode? {
    val n = this?.get(name) ?: return null
    return if (n.isNull || n.isMissingNode) null else n
}

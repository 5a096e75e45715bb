package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import org.yaml.snakeyaml.DumperOptions
import org.yaml.snakeyaml.LoaderOptions
import org.yaml.snakeyaml.Yaml
import org.yaml.snakeyaml.constructor.SafeConstructor
import org.yaml.snakeyaml.error.Mark
import org.yaml.snakeyaml.error.MarkedYAMLException
import org.yaml.snakeyaml.nodes.MappingNode
import org.yaml.snakeyaml.nodes.Node
import org.yaml.snakeyaml.nodes.ScalarNode
import org.yaml.snakeyaml.nodes.SequenceNode
import org.yaml.snakeyaml.nodes.Tag
import org.yaml.snakeyaml.representer.Representer
import org.yaml.snakeyaml.resolver.Resolver
import java.io.StringReader
import java.util.regex.Pattern

/** Zero-based line/column of a finding plus character offsets (start/end) for the IDE's TextRange. */
data class Range(val line: Int, val column: Int, val startOffset: Int, val endOffset: Int) {
    companion object {
        fun of(start: Mark, end: Mark) = Range(start.line, start.column, start.index, maxOf(start.index, end.index))
    }
}

enum class Severity(val wire: String) { ERROR("error"), WARNING("warning") }

/**
 * One finding in a `stella.yaml`, in the shared fixtures' terms (`extensions/fixtures/README.md`):
 * [kind], [severity], [path] (JSON Pointer of the offending value), [property] (only for `schema-required`),
 * and a position ([range] is null for `yaml-syntax`, whose position parsers disagree on).
 */
data class Diagnostic(
    val kind: String,
    val severity: Severity,
    val path: String,
    val message: String,
    val range: Range?,
    val property: String? = null,
) {
    /** 1-based, as in the fixtures; null for yaml-syntax. */
    val line: Int? get() = if (kind == "yaml-syntax") null else range?.let { it.line + 1 }
    val column: Int? get() = if (kind == "yaml-syntax") null else range?.let { it.column + 1 }
}

data class CheckResult(val ignored: Boolean, val diagnostics: List<Diagnostic>) {
    val valid: Boolean get() = diagnostics.none { it.severity == Severity.ERROR }
}

/**
 * Checks `stella.yaml` against the shared JSON Schema (`extensions/schema/stella.schema.json`) and the rules
 * the schema cannot express (duplicate names, environment references, promotion order, environments unknown
 * to the Orchestrator). Positions come from the YAML node marks so the IDE can annotate the exact place.
 *
 * Follows the fixtures' contract: YAML 1.2 core schema, all schema errors reported, semantic checks only on
 * a schema-valid document, files with a top-level `openapi`/`swagger` key ignored.
 * Schema keywords supported: type, const, enum, required, properties, additionalProperties, items, minItems,
 * maxItems, pattern, minLength, maxLength, minimum, maximum, allOf, local $ref.
 */
class StellaYamlChecker(private val schema: JsonNode) {

    fun check(text: String, serverEnvironments: Collection<String>? = null): CheckResult {
        val root: Node? = try {
            yaml().compose(StringReader(text))
        } catch (e: MarkedYAMLException) {
            val m = e.problemMark ?: e.contextMark
            val r = m?.let { Range(it.line, it.column, it.index, minOf(it.index + 1, text.length)) }
            return CheckResult(false, listOf(Diagnostic("yaml-syntax", Severity.ERROR, "", (e.problem ?: e.message ?: "invalid YAML").trim(), r)))
        } catch (e: org.yaml.snakeyaml.error.YAMLException) {
            return CheckResult(false, listOf(Diagnostic("yaml-syntax", Severity.ERROR, "", e.message ?: "invalid YAML", null)))
        }
        duplicateKey(root)?.let { k ->
            return CheckResult(false, listOf(Diagnostic("yaml-syntax", Severity.ERROR, "", "duplicate key \"${(k as ScalarNode).value}\"", Range.of(k.startMark, k.endMark))))
        }
        if (root is MappingNode && root.value.any { (it.keyNode as? ScalarNode)?.value in setOf("openapi", "swagger") }) {
            return CheckResult(true, emptyList())
        }
        val out = mutableListOf<Diagnostic>()
        if (root == null) {
            out += Diagnostic("schema-type", Severity.ERROR, "", "stella.yaml is empty: expected a mapping", Range(0, 0, 0, 0))
        } else {
            validate(root, schema, "", null, out)
            if (out.isEmpty()) semantic(root, serverEnvironments, out)
        }
        return CheckResult(false, out.sortedWith(compareBy<Diagnostic>({ it.line ?: 0 }, { it.column ?: 0 }, { it.kind }, { it.path })))
    }

    // ---------------- schema ----------------

    private fun resolve(s: JsonNode): JsonNode {
        var cur = s
        var guard = 0
        while (cur.has("\$ref") && guard++ < 32) {
            val ref = cur.get("\$ref").asText()
            require(ref.startsWith("#")) { "only local \$ref supported: $ref" }
            cur = schema.at(ref.substring(1))
        }
        return cur
    }

    /** [keyNode] is the mapping key [node] is the value of: an implicit null value is located at its key. */
    private fun validate(node: Node, s0: JsonNode, path: String, keyNode: Node?, out: MutableList<Diagnostic>) {
        val s = resolve(s0)
        if (s.isBoolean) {
            if (!s.asBoolean()) out += Diagnostic("schema-false", Severity.ERROR, path, "${label(path)} is not allowed", at(node, keyNode))
            return
        }
        s.node("allOf")?.forEach { validate(node, it, path, keyNode, out) }
        val here = at(node, keyNode)
        fun err(kind: String, msg: String, r: Range? = here) { out += Diagnostic(kind, Severity.ERROR, path, msg, r) }

        s.node("type")?.let { t ->
            val allowed = if (t.isArray) t.map { it.asText() } else listOf(t.asText())
            val actual = typeOf(node)
            if (allowed.none { matchesType(actual, it) }) {
                err("schema-type", "${label(path)} must be ${allowed.joinToString(" or ") { article(it) }}, not ${article(actual)}")
                return
            }
        }
        s.node("const")?.let { c -> if (!sameValue(node, c)) err("schema-const", "${label(path)} must be $c") }
        s.node("enum")?.let { e -> if (e.none { sameValue(node, it) }) err("schema-enum", "${label(path)} must be one of ${e.joinToString(", ")}") }
        if (node is ScalarNode && typeOf(node) == "string") {
            val v = node.value
            val len = v.codePointCount(0, v.length)
            s.node("pattern")?.let { p -> if (!Pattern.compile(p.asText()).matcher(v).find()) err("schema-pattern", "${label(path)} \"$v\" does not match ${p.asText()}") }
            s.int("minLength")?.let { if (len < it) err("schema-min-length", "${label(path)} must have at least $it character${if (it == 1) "" else "s"}") }
            s.int("maxLength")?.let { if (len > it) err("schema-max-length", "${label(path)} must have at most $it characters") }
        }
        if (node is ScalarNode && typeOf(node).let { it == "integer" || it == "number" }) {
            numberValue(node)?.let { v ->
                s.node("minimum")?.let { if (v < it.asDouble()) err("schema-minimum", "${label(path)} must be >= ${it.asText()}") }
                s.node("maximum")?.let { if (v > it.asDouble()) err("schema-maximum", "${label(path)} must be <= ${it.asText()}") }
            }
        }
        if (node is MappingNode) {
            val keys = node.value.map { (it.keyNode as? ScalarNode)?.value }
            s.node("required")?.forEach { req ->
                val name = req.asText()
                if (name !in keys) out += Diagnostic("schema-required", Severity.ERROR, path,
                    "missing required field \"$name\"${if (path.isEmpty()) "" else " in ${label(path)}"}", here, property = name)
            }
            val props = s.node("properties")
            val additional = s.node("additionalProperties")
            for (t in node.value) {
                val k = (t.keyNode as? ScalarNode)?.value ?: continue
                val childPath = "$path/${escape(k)}"
                val ps = props?.node(k)
                when {
                    ps != null -> validate(t.valueNode, ps, childPath, t.keyNode, out)
                    additional != null && additional.isBoolean && !additional.asBoolean() ->
                        out += Diagnostic("schema-additional-property", Severity.ERROR, childPath,
                            "unknown field \"$k\"${if (path.isEmpty()) "" else " in ${label(path)}"}", Range.of(t.keyNode.startMark, t.keyNode.endMark))
                    additional != null && additional.isObject -> validate(t.valueNode, additional, childPath, t.keyNode, out)
                }
            }
        }
        if (node is SequenceNode) {
            val items = node.value
            s.int("minItems")?.let { if (items.size < it) err("schema-min-items", "${label(path)} must have at least $it item${if (it == 1) "" else "s"}") }
            s.int("maxItems")?.let { if (items.size > it) err("schema-max-items", "${label(path)} must have at most $it items") }
            s.node("items")?.let { itemSchema -> items.forEachIndexed { i, n -> validate(n, itemSchema, "$path/$i", null, out) } }
        }
    }

    // ---------------- rules beyond the schema ----------------

    private fun semantic(root: Node, serverEnvironments: Collection<String>?, out: MutableList<Diagnostic>) {
        if (root !is MappingNode) return
        fun names(key: String): List<Pair<Int, ScalarNode>> =
            ((value(root, key) as? SequenceNode)?.value ?: emptyList()).mapIndexedNotNull { i, item ->
                ((item as? MappingNode)?.let { value(it, "name") } as? ScalarNode)?.let { i to it }
            }

        val envs = names("environments")
        for ((section, list) in listOf("components" to names("components"), "environments" to envs)) {
            val seen = HashSet<String>()
            for ((i, n) in list) if (!seen.add(n.value)) {
                out += Diagnostic("duplicate-name", Severity.ERROR, "/$section/$i/name", "${section.dropLast(1)} \"${n.value}\" is listed more than once", pos(n))
            }
        }
        val order = envs.map { it.second.value }.distinct()
        (value(root, "promotion") as? MappingNode)?.let { promotion ->
            val refs = listOf("from", "to").mapNotNull { f -> (value(promotion, f) as? ScalarNode)?.let { f to it } }.toMap()
            for ((field, ref) in refs) if (ref.value !in order) {
                out += Diagnostic("unknown-environment", Severity.ERROR, "/promotion/$field",
                    "unknown environment \"${ref.value}\"; environments in this file: ${order.joinToString(", ")}", pos(ref))
            }
            val from = refs["from"]?.value
            val to = refs["to"]
            if (from != null && to != null && from in order && to.value in order && order.indexOf(from) >= order.indexOf(to.value)) {
                out += Diagnostic("promotion-order", Severity.WARNING, "/promotion/to",
                    "promotion goes from \"$from\" to \"${to.value}\", which is not later in the environment order", pos(to))
            }
        }
        if (serverEnvironments != null) {
            for ((i, n) in envs) if (n.value !in serverEnvironments) {
                out += Diagnostic("environment-not-on-server", Severity.WARNING, "/environments/$i/name",
                    "the Orchestrator has no environment \"${n.value}\" (it has: ${serverEnvironments.joinToString(", ")})", pos(n))
            }
        }
    }

    companion object {
        fun load(schemaJson: String) = StellaYamlChecker(Json.parse(schemaJson))

        /** SnakeYAML (YAML 1.1) with the YAML 1.2 core schema's implicit types, and duplicate keys rejected. */
        fun yaml(): Yaml {
            val lo = LoaderOptions().apply { isAllowDuplicateKeys = false; maxAliasesForCollections = 50 }
            return Yaml(SafeConstructor(lo), Representer(DumperOptions()), DumperOptions(), lo, CoreSchemaResolver())
        }

        /** The first repeated key anywhere in the document (YAML 1.2 requires unique keys; compose() does not check). */
        fun duplicateKey(n: Node?): Node? = when (n) {
            is MappingNode -> {
                val seen = HashSet<String>()
                n.value.firstNotNullOfOrNull { t ->
                    val k = t.keyNode as? ScalarNode
                    if (k != null && !seen.add(k.value)) k else duplicateKey(t.valueNode)
                }
            }
            is SequenceNode -> n.value.firstNotNullOfOrNull { duplicateKey(it) }
            else -> null
        }

        /** The value node of [key] in a mapping. */
        fun value(m: MappingNode, key: String): Node? = m.value.firstOrNull { (it.keyNode as? ScalarNode)?.value == key }?.valueNode

        fun typeOf(n: Node): String = when (n) {
            is MappingNode -> "object"
            is SequenceNode -> "array"
            is ScalarNode -> when (n.tag) {
                Tag.INT -> "integer"
                Tag.FLOAT -> if (numberValue(n)?.let { it == Math.floor(it) && !it.isInfinite() } == true) "integer" else "number"
                Tag.BOOL -> "boolean"
                Tag.NULL -> "null"
                else -> "string"
            }
            else -> "unknown"
        }

        fun numberValue(n: ScalarNode): Double? {
            val v = n.value
            return when {
                v.startsWith("0x") -> v.substring(2).toLongOrNull(16)?.toDouble()
                v.startsWith("0o") -> v.substring(2).toLongOrNull(8)?.toDouble()
                v.matches(Regex("[-+]?\\.(inf|Inf|INF)")) -> if (v.startsWith("-")) Double.NEGATIVE_INFINITY else Double.POSITIVE_INFINITY
                else -> v.toDoubleOrNull()
            }
        }

        /** Start of a node; an implicit null (`key:` with nothing after it) is located at its key. */
        private fun at(node: Node, keyNode: Node?): Range =
            if (keyNode != null && node is ScalarNode && node.tag == Tag.NULL && node.value.isEmpty()) pos(keyNode) else pos(node)

        private fun pos(n: Node): Range = Range.of(n.startMark, n.endMark)

        private fun matchesType(actual: String, wanted: String) = actual == wanted || (wanted == "number" && actual == "integer")

        private fun article(t: String) = when (t) {
            "object" -> "a mapping"; "array" -> "a list"; "integer" -> "an integer"; "null" -> "empty"
            else -> "a $t"
        }

        private fun sameValue(n: Node, v: JsonNode): Boolean {
            if (n !is ScalarNode) return false
            return when (typeOf(n)) {
                "integer", "number" -> v.isNumber && numberValue(n) == v.asDouble()
                "boolean" -> v.isBoolean && n.value.lowercase() == v.asBoolean().toString()
                "null" -> v.isNull
                else -> v.isTextual && v.asText() == n.value
            }
        }

        private fun escape(k: String) = k.replace("~", "~0").replace("/", "~1")

        private fun label(path: String) = if (path.isEmpty()) "the file" else path.trimStart('/').split('/').joinToString("") { seg ->
            if (seg.all { it.isDigit() }) "[$seg]" else ".$seg"
        }.trimStart('.')
    }
}

/** Implicit scalar types of the YAML 1.2 core schema (no yes/no/on/off booleans, no sexagesimal, no timestamps). */
class CoreSchemaResolver : Resolver() {
    override fun addImplicitResolvers() {
        addImplicitResolver(Tag.BOOL, Pattern.compile("^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF")
        addImplicitResolver(Tag.INT, Pattern.compile("^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789")
        addImplicitResolver(Tag.FLOAT, Pattern.compile("^(?:[-+]?(?:\\.[0-9]+|[0-9]+(?:\\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN))$"), "-+0123456789.")
        addImplicitResolver(Tag.NULL, Pattern.compile("^(?:~|null|Null|NULL| )$"), "~nN\u0000")
        addImplicitResolver(Tag.NULL, Pattern.compile("^$"), null)
    }
}

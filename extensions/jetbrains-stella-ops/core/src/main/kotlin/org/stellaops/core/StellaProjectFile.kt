package org.stellaops.core

import org.yaml.snakeyaml.nodes.MappingNode
import org.yaml.snakeyaml.nodes.ScalarNode
import org.yaml.snakeyaml.nodes.SequenceNode
import java.io.StringReader

/**
 * What the IDE needs to know of a `stella.yaml` beyond diagnostics: project, server override and the
 * environments with their positions (for gutter marks and for pre-selecting the environment in Promote).
 */
data class StellaProjectFile(
    val project: String?,
    val server: String?,
    val tenant: String?,
    val environments: List<EnvironmentEntry>,
    val promotionFrom: String?,
    val promotionTo: String?,
    /** `integrations:`: names or ids of the hub's integrations the project depends on (followed for notifications). */
    val integrations: List<String> = emptyList(),
    /** Where the `project:` value is. */
    val projectRange: Range? = null,
    /** Where the `promotion:` key is. */
    val promotionRange: Range? = null,
) {
    /** An environment item: [name] and the range of the whole item (the `- name: …` mapping). */
    data class EnvironmentEntry(val name: String, val nameRange: Range, val itemStart: Int, val itemEnd: Int)

    /** The environment whose item contains [offset], e.g. the caret position. */
    fun environmentAt(offset: Int): EnvironmentEntry? = environments.firstOrNull { offset >= it.itemStart && offset <= it.itemEnd }

    /** The environment after [name] in the promotion order, the default target when promoting from it. */
    fun next(name: String): String? = environments.map { it.name }.let { l -> l.indexOf(name).takeIf { it >= 0 && it + 1 < l.size }?.let { l[it + 1] } }

    companion object {
        /** Best effort: null when the text is not YAML or is an OpenAPI document. */
        fun parse(text: String): StellaProjectFile? {
            val root = try { StellaYamlChecker.yaml().compose(StringReader(text)) } catch (e: Exception) { null } as? MappingNode ?: return null
            fun str(m: MappingNode, k: String) = (StellaYamlChecker.value(m, k) as? ScalarNode)?.value
            if (str(root, "openapi") != null || str(root, "swagger") != null) return null
            val envs = ((StellaYamlChecker.value(root, "environments") as? SequenceNode)?.value ?: emptyList()).mapNotNull { item ->
                val m = item as? MappingNode ?: return@mapNotNull null
                val n = StellaYamlChecker.value(m, "name") as? ScalarNode ?: return@mapNotNull null
                EnvironmentEntry(n.value, Range.of(n.startMark, n.endMark), m.startMark.index, m.endMark.index)
            }
            val promotion = StellaYamlChecker.value(root, "promotion") as? MappingNode
            val promotionKey = root.value.firstOrNull { (it.keyNode as? ScalarNode)?.value == "promotion" }?.keyNode
            val integrations = ((StellaYamlChecker.value(root, "integrations") as? SequenceNode)?.value ?: emptyList())
                .mapNotNull { (it as? ScalarNode)?.takeIf { n -> n.tag == org.yaml.snakeyaml.nodes.Tag.STR && n.value.isNotEmpty() }?.value }
            return StellaProjectFile(
                str(root, "project"), str(root, "server"), str(root, "tenant"), envs,
                promotion?.let { str(it, "from") }, promotion?.let { str(it, "to") },
                integrations,
                (StellaYamlChecker.value(root, "project") as? ScalarNode)?.let { Range.of(it.startMark, it.endMark) },
                promotionKey?.let { Range.of(it.startMark, it.endMark) },
            )
        }
    }
}

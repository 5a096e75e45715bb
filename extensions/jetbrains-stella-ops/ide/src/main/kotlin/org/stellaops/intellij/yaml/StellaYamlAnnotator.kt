package org.stellaops.intellij.yaml

import com.intellij.lang.annotation.AnnotationHolder
import com.intellij.lang.annotation.ExternalAnnotator
import com.intellij.lang.annotation.HighlightSeverity
import com.intellij.openapi.util.TextRange
import com.intellij.psi.PsiFile
import org.stellaops.core.CheckResult
import org.stellaops.core.Severity
import org.stellaops.core.StellaYamlChecker
import org.stellaops.intellij.StellaOpsPlugin

/**
 * Annotates `stella.yaml` with the core checks (shared schema + semantic rules). An [ExternalAnnotator] so the
 * whole-file check runs in the background, not per PSI element on the EDT.
 */
class StellaYamlAnnotator : ExternalAnnotator<StellaYamlAnnotator.Input, CheckResult>() {
    data class Input(val text: String, val serverEnvironments: List<String>?)

    override fun collectInformation(file: PsiFile): Input? {
        if (file.name != "stella.yaml") return null
        val plugin = StellaOpsPlugin.getInstance(file.project)
        // Environments the Orchestrator knows (fresh or last-known); null when never fetched.
        val server = plugin.state.environments?.value?.map { it.name }
        return Input(file.text, server)
    }

    override fun doAnnotate(collectedInfo: Input?): CheckResult? =
        collectedInfo?.let { checker.check(it.text, it.serverEnvironments) }

    override fun apply(file: PsiFile, annotationResult: CheckResult?, holder: AnnotationHolder) {
        val result = annotationResult ?: return
        if (result.ignored) return
        val length = file.textLength
        for (d in result.diagnostics) {
            val r = d.range
            val start = (r?.startOffset ?: 0).coerceIn(0, length)
            val end = (r?.endOffset ?: start).coerceIn(start, length).let { if (it == start && start < length) start + 1 else it }
            val severity = if (d.severity == Severity.ERROR) HighlightSeverity.ERROR else HighlightSeverity.WARNING
            holder.newAnnotation(severity, "Stella: ${d.message}")
                .range(TextRange(start, end))
                .tooltip("${d.message} [${d.kind}${if (d.path.isNotEmpty()) " at ${d.path}" else ""}]")
                .create()
        }
    }

    companion object {
        /** The shared schema, packaged from extensions/schema/stella.schema.json by the Gradle build. */
        val checker: StellaYamlChecker by lazy {
            val text = StellaYamlAnnotator::class.java.getResourceAsStream("/schema/stella.schema.json")
                ?.use { it.readBytes().toString(Charsets.UTF_8) }
                ?: error("stella.schema.json missing from the plugin")
            StellaYamlChecker.load(text)
        }
    }
}

package org.stellaops.core

/** What a promote mark does when clicked. */
enum class MarkAction { PROMOTE, SIGN_IN, REFRESH, SHOW_TOOL_WINDOW }

/** The release and environment a promote mark promotes; both ids as the Orchestrator knows them. */
data class PromoteTarget(val releaseId: String, val releaseName: String, val targetEnvironmentId: String, val targetEnvironmentName: String)

/**
 * One mark in `stella.yaml`: the JetBrains counterpart of a VS Code CodeLens (the titles are the same).
 * [line] is 1-based, [offset] where its gutter icon attaches (the project value, an environment's name,
 * the `promotion:` key); [target] is set for [MarkAction.PROMOTE].
 */
data class PromoteMark(val line: Int, val offset: Int, val title: String, val action: MarkAction, val target: PromoteTarget? = null)

/**
 * The promote actions of a `stella.yaml`, computed from the file and what the Orchestrator reports: above
 * each environment "deployed v1.4.2 to stage" and, when the next environment in the file's order does not run
 * that release, "Promote v1.4.2 to prod…"; on `promotion:` "Promote stage → prod (v1.4.2)…"; on `project:`
 * the latest release. The IDE layer only draws them (gutter icons) and runs [MarkAction]s.
 */
object PromoteMarks {
    fun compute(file: StellaProjectFile, state: ViewState): List<PromoteMark> {
        val firstLine = file.projectRange ?: file.environments.firstOrNull()?.nameRange
        val first = { title: String, action: MarkAction -> listOf(PromoteMark((firstLine?.line ?: 0) + 1, firstLine?.startOffset ?: 0, title, action)) }
        val envs = state.environments?.value
            ?: return when (state.connection) {
                ConnectionState.SIGNED_OUT -> first("Stella Ops: Sign in to see releases and environments", MarkAction.SIGN_IN)
                ConnectionState.OFFLINE -> first("Stella Ops: offline", MarkAction.REFRESH)
                ConnectionState.CONNECTED -> first("Stella Ops: loading…", MarkAction.REFRESH)
            }
        val stale = if (state.environments?.stale == true) " (stale)" else ""
        val byName = envs.associateBy { it.name }
        val releases = state.releases?.value.orEmpty()
        val out = ArrayList<PromoteMark>()
        file.projectRange?.let { at ->
            val latest = releases.firstOrNull()
            val title = if (latest != null) "Latest release: ${latest.name}${latest.status?.let { " ($it)" } ?: ""} · ${releases.size} release${if (releases.size == 1) "" else "s"}$stale"
            else "No releases for ${file.project}$stale"
            out += PromoteMark(at.line + 1, at.startOffset, title, MarkAction.SHOW_TOOL_WINDOW)
        }
        file.environments.forEachIndexed { i, fe ->
            val line = fe.nameRange.line + 1
            val at = fe.nameRange.startOffset
            val env = byName[fe.name]
            if (env == null) {
                out += PromoteMark(line, at, "${fe.name}: not known to the Orchestrator$stale", MarkAction.REFRESH)
                return@forEachIndexed
            }
            val cur = env.currentRelease
            out += PromoteMark(line, at, if (cur != null) "deployed ${versionOf(cur.name ?: cur.id, null)} to ${env.name}$stale" else "nothing deployed to ${env.name}$stale", MarkAction.SHOW_TOOL_WINDOW)
            val next = file.environments.drop(i + 1).firstNotNullOfOrNull { byName[it.name] }
            if (cur != null && next != null && next.currentRelease?.id != cur.id) {
                out += PromoteMark(line, at, "Promote ${versionOf(cur.name ?: cur.id, null)} to ${next.name}…", MarkAction.PROMOTE, target(cur, next))
            }
        }
        val p = file.promotionRange
        if (p != null && file.promotionFrom != null && file.promotionTo != null) {
            val from = byName[file.promotionFrom]
            val to = byName[file.promotionTo]
            val cur = from?.currentRelease
            if (to != null && cur != null && to.currentRelease?.id != cur.id) {
                out += PromoteMark(p.line + 1, p.startOffset, "Promote ${file.promotionFrom} → ${file.promotionTo} (${versionOf(cur.name ?: cur.id, null)})…", MarkAction.PROMOTE, target(cur, to))
            }
        }
        return out
    }

    private fun target(cur: CurrentRelease, to: Environment) = PromoteTarget(cur.id, cur.name ?: cur.id, to.id, to.name)

    /** "v1.4.2" from a version, else from the end of a release name such as "myapp v1.4.2". */
    fun versionOf(name: String, version: String?): String {
        if (version != null) return if (version.startsWith("v")) version else "v$version"
        val m = Regex("v?\\d+\\.\\d+\\S*$").find(name) ?: return name
        return if (m.value.startsWith("v")) m.value else "v${m.value}"
    }
}

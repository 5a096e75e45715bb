package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.time.Instant
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors

/**
 * The promote action of `stella.yaml` (JetBrains: gutter icons), computed in the core: the same actions and
 * titles as the VS Code CodeLens, and a promotion made from one against the fake Orchestrator.
 */
class PromoteMarksTest {
    private val fixtures: Path by lazy { Path.of(System.getenv("STELLA_FIXTURES_DIR") ?: throw AssertionError("STELLA_FIXTURES_DIR is not set: run through ci.sh")) }
    private val text by lazy { Files.readString(fixtures.resolve("stella-yaml/valid-full/stella.yaml")) }
    private val seed by lazy { Json.parse(Files.readString(fixtures.resolve("../contracts/fake-server/seed.json"))) }
    private val releases by lazy { seed.get("releases").map(Release::from) }
    private val environments by lazy { seed.get("environments").map(Environment::from).sortedBy { it.orderIndex } }

    private fun state(
        envs: List<Environment>? = environments, stale: Boolean = false, connection: ConnectionState = ConnectionState.CONNECTED,
    ) = ViewState(connection, Snapshot(releases, Instant.EPOCH, stale), envs?.let { Snapshot(it, Instant.EPOCH, stale) })

    private fun lines(marks: List<PromoteMark>) = marks.map { "${it.line}: ${it.title}" }

    @Test
    fun `the same actions and titles as the VS Code CodeLens, each attached to its place in the file`() {
        val marks = PromoteMarks.compute(StellaProjectFile.parse(text)!!, state())
        assertEquals(
            listOf(
                "2: Latest release: myapp v1.6.0-rc.1 (draft) · 5 releases",
                "11: deployed v1.5.0 to dev",
                "11: Promote v1.5.0 to stage…",
                "12: deployed v1.4.2 to stage",
                "12: Promote v1.4.2 to prod…",
                "14: deployed v1.4.1 to prod",
                "17: Promote stage → prod (v1.4.2)…",
            ),
            lines(marks),
        )
        val promote = marks[2]
        assertEquals(MarkAction.PROMOTE, promote.action)
        assertEquals(PromoteTarget("rel-myapp-1.5.0", "myapp v1.5.0", "env-stage", "stage"), promote.target)
        assertTrue(text.startsWith("dev", promote.offset))
        assertTrue(text.startsWith("promotion:", marks.last().offset))
        assertEquals(PromoteTarget("rel-myapp-1.4.2", "myapp v1.4.2", "env-prod", "prod"), marks.last().target)
        assertTrue(text.startsWith("myapp", marks[0].offset))
        assertTrue(marks.filter { it.action != MarkAction.PROMOTE }.all { it.target == null })
    }

    @Test
    fun `stale data is marked, no data gives one mark that signs in or refreshes, unknown environments are said`() {
        val file = StellaProjectFile.parse(text)!!
        assertTrue(PromoteMarks.compute(file, state(stale = true)).filter { it.title.startsWith("deployed") }.all { it.title.endsWith(" (stale)") })
        val signedOut = PromoteMarks.compute(file, state(envs = null, connection = ConnectionState.SIGNED_OUT))
        assertEquals(listOf("2: Stella Ops: Sign in to see releases and environments"), lines(signedOut))
        assertEquals(MarkAction.SIGN_IN, signedOut.single().action)
        assertEquals(MarkAction.REFRESH, PromoteMarks.compute(file, state(envs = null, connection = ConnectionState.OFFLINE)).single().action)
        val qa = StellaProjectFile.parse(text.replace("  - name: stage\n", "  - name: qa\n"))!!
        val marks = PromoteMarks.compute(qa, state())
        assertEquals("qa: not known to the Orchestrator", marks.first { it.line == 12 }.title)
        // dev's next known environment is prod now.
        assertEquals("Promote v1.5.0 to prod…", marks.first { it.line == 11 && it.action == MarkAction.PROMOTE }.title)
    }

    @Test
    fun `no promote action when the next environment already runs that release`() {
        val envs = environments.map { if (it.name == "stage") it.copy(currentRelease = environments.first { e -> e.name == "dev" }.currentRelease) else it }
        val titles = PromoteMarks.compute(StellaProjectFile.parse(text)!!, state(envs)).map { it.title }
        assertFalse("Promote v1.5.0 to stage…" in titles)
        assertTrue("deployed v1.5.0 to stage" in titles)
        assertTrue("Promote v1.5.0 to prod…" in titles)
        assertEquals("v1.4.2", PromoteMarks.versionOf("myapp v1.4.2", null))
        assertEquals("v2.0.0-rc.1", PromoteMarks.versionOf("x 2.0.0-rc.1", null))
        assertEquals("v3", PromoteMarks.versionOf("anything", "3"))
        assertEquals("nightly", PromoteMarks.versionOf("nightly", null))
    }

    @Test
    fun `promote from a mark against the fake Orchestrator, then the marks follow the deployment`() {
        FakeServer.reset()
        val exec = Executors.newSingleThreadScheduledExecutor { r -> Thread(r, "stella-test-promote").apply { isDaemon = true } }
        val core = StellaOpsCore(
            StellaSettings(serverUrl = FakeServer.uri.toString(), clientId = "stella-ci", clientSecret = "stella-ci-secret", useClientCredentials = true, project = "myapp"),
            InMemoryTokenStore(), null, exec, {},
        )
        try {
            val file = StellaProjectFile.parse(text)!!
            val mark = PromoteMarks.compute(file, core.refresh().await()).first { it.title == "Promote v1.5.0 to stage…" }
            val target = mark.target!!
            val p = core.promote(target.releaseId, target.targetEnvironmentId, "Release train 47", "CHG-47").await()
            assertEquals("env-stage", p.targetEnvironmentId)
            assertEquals("rel-myapp-1.5.0", p.releaseId)
            val end = System.nanoTime() + Duration.ofSeconds(10).toNanos()
            while (core.orchestrator.promotion(p.id).await().status != "deployed") {
                assertTrue(System.nanoTime() < end, "the promotion was not deployed in time"); Thread.sleep(50)
            }
            val recorded = FakeServer.state().get("promotions").first { it.str("id") == p.id }
            assertEquals("Release train 47", recorded.str("reason")); assertEquals("CHG-47", recorded.str("ticket"))
            val after = PromoteMarks.compute(file, core.refresh().await()).map { it.title }
            assertTrue("deployed v1.5.0 to stage" in after, "$after")
            assertFalse("Promote v1.5.0 to stage…" in after)
            assertTrue("Promote v1.5.0 to prod…" in after)
            assertTrue("Promote stage → prod (v1.5.0)…" in after)
            assertEquals(2, core.state.deployments!!.value.size, "the Deployments tab shows it")
        } finally {
            core.dispose(); exec.shutdownNow()
        }
    }
}

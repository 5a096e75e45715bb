// The project file: the workspace's stella.yaml whose `project:` filters the releases and whose `server:`
// overrides the stellaops.serverUrl setting.
import { parseStellaYaml } from './stellaYaml';

export interface ProjectRef {
  name?: string;
  server?: string;
  /** `integrations:` of stella.yaml: names or ids the project depends on (followed for notifications). */
  integrations?: string[];
}

/**
 * The project among candidate stella.yaml files: the first one, shortest path first, that is not an OpenAPI
 * document (upstream keeps one named stella.yaml). Files are read one at a time, until one is found.
 */
export async function findProject<F extends { path: string }>(files: F[], read: (f: F) => Promise<string>, schema: object): Promise<{ file: F; project: ProjectRef } | undefined> {
  for (const f of files.sort((a, b) => a.path.length - b.path.length)) {
    const { model } = parseStellaYaml(await read(f), schema);
    if (model.isOpenApi) continue;
    return { file: f, project: { name: model.project, server: model.server, integrations: model.integrations } };
  }
  return undefined;
}

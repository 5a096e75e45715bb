// Preloaded by the unit test runner: `require('vscode')` resolves to the hand-written mock.
import Module = require('module');
const M = Module as unknown as { _resolveFilename: (req: string, ...rest: unknown[]) => string };
const orig = M._resolveFilename;
M._resolveFilename = function (req: string, ...rest: unknown[]) {
  if (req === 'vscode') return require.resolve('./vscode-mock');
  return orig.call(this, req, ...rest);
};

// Two builds of Runway side by side, for benchmarks that compare the build before a change (A, a
// git commit) with the working tree's (B).
//
//   A: `git worktree add --detach` of BENCH_BASE (default 2702415, the commit before the run-core
//      refactor) in a temporary directory under os.tmpdir() (never inside this repository), with
//      node_modules symlinked to this tree's (or its own `npm ci` when its lockfile differs),
//      compiled with `npx tsc -p tsconfig.build.json`.
//      The worktree is removed when the process exits (normally, by an uncaught error, or on
//      SIGINT / SIGTERM / SIGHUP).
//   B: this tree, compiled the same way into its own dist/ (BENCH_NO_BUILD=1 skips the compile).
//
// Each build is run from its own root, so it reads its own config/runway.yaml by default.
//
//   import { buildsFromEnv } from './builds.mjs'
//   for (const build of buildsFromEnv()) console.log(build.label, build.server)
//
//   BENCH_BUILDS=base,head (default) | base | head     which builds, in that order
//   BENCH_BASE=<commit>                                 A's commit
import { execFileSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This repository's root (the parent of bench/). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DEFAULT_BASE = '2702415';

const git = (...args) => execFileSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8' }).trim();

/** Temporary worktrees made by this process: { tree, parent }. */
const made = [];
let hooked = false;

function removeWorktrees() {
  for (const { tree, parent } of made.splice(0)) {
    try {
      execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'remove', '--force', tree], { stdio: 'ignore' });
    } catch {
      // Removed below by hand; `worktree prune` then forgets it.
    }
    rmSync(parent, { recursive: true, force: true });
  }
  try {
    execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'prune'], { stdio: 'ignore' });
  } catch {
    // Nothing to prune.
  }
}

function hookCleanup() {
  if (hooked) return;
  hooked = true;
  process.on('exit', removeWorktrees);
  // A signal would otherwise end the process without running 'exit' listeners.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(signal, () => {
      console.error(`\n${signal}: removing temporary worktrees and stopping`);
      process.exit(130);
    });
  }
}

function compile(root) {
  const t0 = Date.now();
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  return Date.now() - t0;
}

/**
 * A: `commit` checked out into a temporary worktree and compiled there. Returns the build; its
 * worktree is removed at exit.
 *
 * @example
 *   const a = baseBuild('2702415')   // { name: 'base', label: 'A 2702415', root: '/tmp/…/tree', server: '/tmp/…/tree/dist/src/server.js', … }
 */
export function baseBuild(commit = process.env.BENCH_BASE || DEFAULT_BASE) {
  const sha = git('rev-parse', '--verify', `${commit}^{commit}`);
  hookCleanup();
  const parent = mkdtempSync(join(tmpdir(), `runway-bench-${sha.slice(0, 7)}-`));
  const tree = join(parent, 'tree');
  made.push({ tree, parent });
  execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'add', '--detach', tree, sha], { stdio: ['ignore', 'ignore', 'inherit'] });
  // Its own dependencies when its lockfile differs from this tree's (a dependency added or dropped
  // since), this tree's node_modules otherwise (no install).
  if (git('rev-parse', `${sha}:package-lock.json`) === git('rev-parse', 'HEAD:package-lock.json')) {
    symlinkSync(realpathSync(join(REPO_ROOT, 'node_modules')), join(tree, 'node_modules'), 'dir');
  } else {
    execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: tree, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const ms = compile(tree);
  console.error(`A: ${sha.slice(0, 7)} built in ${tree} (${(ms / 1000).toFixed(1)} s)`);
  return { name: 'base', label: `A ${sha.slice(0, 7)}`, commit: sha, root: tree, server: join(tree, 'dist/src/server.js') };
}

/**
 * B: this working tree, compiled into its dist/ (unless `build` is false). The label says whether
 * tracked files differ from HEAD.
 */
export function headBuild({ build = process.env.BENCH_NO_BUILD !== '1' } = {}) {
  const sha = git('rev-parse', 'HEAD');
  // Uncommitted changes to what the build is made of (bench/ and docs do not count).
  const dirty = git('status', '--porcelain', '--untracked-files=no', '--', 'src', 'routes', 'tsconfig.json', 'tsconfig.build.json', 'package.json') !== '';
  if (build) {
    const ms = compile(REPO_ROOT);
    console.error(`B: working tree (${sha.slice(0, 7)}${dirty ? ' + uncommitted changes' : ''}) built (${(ms / 1000).toFixed(1)} s)`);
  }
  return {
    name: 'head',
    label: `B ${sha.slice(0, 7)}${dirty ? '+' : ''} (working tree)`,
    commit: sha,
    root: REPO_ROOT,
    server: join(REPO_ROOT, 'dist/src/server.js'),
  };
}

/** The builds BENCH_BUILDS names (default `base,head`: A then B), each built once. */
export function buildsFromEnv({ defaultBuilds = 'base,head' } = {}) {
  const names = (process.env.BENCH_BUILDS || defaultBuilds).split(',').map((s) => s.trim()).filter(Boolean);
  const builds = [];
  for (const name of names) {
    if (name === 'base' || name === 'A') builds.push(baseBuild());
    else if (name === 'head' || name === 'B') builds.push(headBuild());
    else throw new Error(`BENCH_BUILDS: unknown build ${JSON.stringify(name)} (base or head)`);
  }
  return builds;
}

export interface Build {
  name: 'base' | 'head';
  label: string;
  commit: string;
  root: string;
  server: string;
}
export const REPO_ROOT: string;
export const DEFAULT_BASE: string;
export function baseBuild(commit?: string): Build;
export function headBuild(options?: { build?: boolean }): Build;
export function buildsFromEnv(options?: { defaultBuilds?: string }): Build[];

export function pinLoadGenerator(): boolean;
export function onServerCpu(pinned: boolean, argv: readonly string[]): [command: string, ...args: string[]];

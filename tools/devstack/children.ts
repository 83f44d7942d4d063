// The dev stack's child processes (Orthanc, the middleman nodes, FerretDB, HAProxy): waiting for one to end, stopping
// one with a grace time, and signalling the ones still running when this process exits.
import type { ChildProcess } from 'node:child_process';

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export function waitExit(child: ChildProcess): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Sends `signal` unless it has ended; resolves once it has. */
export function signalAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (exited(child)) return Promise.resolve();
  const done = waitExit(child);
  child.kill(signal);
  return done;
}

/** `signal` (SIGTERM), then SIGKILL after `graceMs` if it is still running. */
export async function stopChild(child: ChildProcess, graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (exited(child)) return;
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await signalAndWait(child, signal);
  } finally {
    clearTimeout(timer);
  }
}

const tracked = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Sends SIGTERM to `child` when this process exits while it still runs ('exit' handlers must be synchronous: the
 * children shut down on their own). Death by a signal skips 'exit'; Orthanc's loopback shim covers that case for it.
 */
export function trackChild(child: ChildProcess): void {
  tracked.add(child);
  child.once('exit', () => tracked.delete(child));
  child.once('error', () => tracked.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of tracked) c.kill('SIGTERM');
    });
  }
}

// Free TCP ports on 127.0.0.1 for tests and benchmarks. They come from 20000-31999, below Linux's ephemeral range
// (32768-60999), so the kernel never hands one of them to an outgoing connection between the check and the use
// (a port from listen(0) is ephemeral, and was once taken that way: EADDRINUSE); and away from the dev stack's
// ports (4242, 4244, 8042-8044, 11112), so tests never clash with a running demo.
import net from 'node:net';

const FIRST = 20_000;
const COUNT = 12_000;
/** Ports this process handed out: never twice. Parallel runs start at different places (the process ID). */
const handedOut = new Set<number>();
let next = (process.pid * 7919) % COUNT;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** n distinct ports that were free a moment ago. */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let tried = 0; out.length < n; tried++) {
    if (tried >= COUNT) throw new Error(`no free port left in ${FIRST}-${FIRST + COUNT - 1}`);
    const port = FIRST + (next++ % COUNT);
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    out.push(port);
  }
  return out;
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

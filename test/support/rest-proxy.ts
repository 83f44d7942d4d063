// An HTTP proxy in front of an Orthanc's REST API, for outage tests: the middleman's pacs.url points at it while
// its DICOM traffic goes to the Orthanc directly. down() closes the port and every connection (the REST API
// unreachable: connection refused), unauthorized() forwards every request with wrong credentials (Orthanc itself
// answers 401), up() passes requests through again.
import http from 'node:http';

export type ProxyMode = 'up' | 'down' | 'unauthorized';

export interface RestProxy {
  url: string;
  port: number;
  readonly mode: ProxyMode;
  /** Requests answered since the start, per HTTP status (what the middleman was told). */
  answered: Map<number, number>;
  up(): Promise<void>;
  down(): Promise<void>;
  unauthorized(): Promise<void>;
  close(): Promise<void>;
}

const WRONG_CREDENTIALS = `Basic ${Buffer.from('dphiant-test:wrong-password').toString('base64')}`;

export async function startRestProxy(upstreamUrl: string, port: number): Promise<RestProxy> {
  const upstream = new URL(upstreamUrl);
  let mode: ProxyMode = 'up';
  let server: http.Server | undefined;
  const answered = new Map<number, number>();

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const headers = { ...req.headers, host: upstream.host };
    if (mode === 'unauthorized') headers.authorization = WRONG_CREDENTIALS;
    const out = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (up) => {
      answered.set(up.statusCode ?? 0, (answered.get(up.statusCode ?? 0) ?? 0) + 1);
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      if (server) return resolve();
      const s = http.createServer(handle);
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        server = s;
        resolve();
      });
    });
  const close = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      if (!s) return resolve();
      s.close(() => resolve());
      s.closeAllConnections();
    });

  await listen();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get mode() {
      return mode;
    },
    answered,
    async up() {
      mode = 'up';
      await listen();
    },
    async down() {
      mode = 'down';
      await close();
    },
    async unauthorized() {
      mode = 'unauthorized';
      await listen();
    },
    close,
  };
}

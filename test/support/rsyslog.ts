// Debian's rsyslog (rsyslog-gnutls for TLS) as a real audit record repository: an rsyslogd of the test's own, in the
// foreground, on free loopback ports, with an RFC 5425 TLS input (mutual TLS: a client certificate of the trusted CA
// required) and an RFC 5426 UDP input, writing each message it parsed as one JSON line (%jsonmesg%) to a file.
// -f loads only what its config lists: no imuxsock or imklog, nothing that needs root or the system's /dev/log.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, globSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { exited, stopChild, trackChild } from '../../tools/devstack/children.js';
import type { CertifiedKey } from '../../tools/devstack/tls.js';
import { freePorts } from './ports.js';

export const RSYSLOGD = '/usr/sbin/rsyslogd';

/** One message as rsyslog parsed it: the fields of %jsonmesg% this test reads. */
export interface ParsedSyslog {
  msg: string;
  rawmsg: string;
  timereported: string;
  syslogfacility: string;
  syslogseverity: string;
  'app-name': string;
  procid: string;
  msgid: string;
  'structured-data': string;
  /** imtcp or imudp: the input it came in on */
  inputname: string;
  fromhost: string;
}

export interface Rsyslog {
  tcpPort: number;
  udpPort: number;
  /** rsyslogd's stderr so far: its own messages (a refused TLS peer, a bad config) go there when run with -n. */
  log(): string;
  /** The messages it has written, in order. */
  messages(): ParsedSyslog[];
  /** Resolves once at least `n` messages are written; throws after `ms`. */
  waitFor(n: number, ms?: number): Promise<ParsedSyslog[]>;
  /** SIGTERM (SIGKILL after 10 s), resolved once it has exited; it writes what it has queued first (for 1.5 s at most). */
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same ports with the same files. */
  restart(): Promise<void>;
}

/** Why rsyslog cannot run here, or undefined. */
export function rsyslogMissing(): string | undefined {
  if (!existsSync(RSYSLOGD)) return `${RSYSLOGD} is missing (Debian package rsyslog; make test-deps installs it)`;
  if (!globSync('/usr/lib/*/rsyslog/lmnsd_gtls.so').length) return "rsyslog's TLS driver lmnsd_gtls.so is missing (Debian package rsyslog-gnutls; make test-deps installs it)";
  return undefined;
}

export interface RsyslogOptions {
  /** its files: config, pid file, work directory, messages.jsonl */
  dir: string;
  /** The CA whose certificates it trusts (from clients) and its own server certificate, issued by it. */
  ca: string;
  server: CertifiedKey;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether 127.0.0.1:port has a TCP listener (state 0A) or a bound UDP socket, from /proc/net. */
function bound(proto: 'tcp' | 'udp', port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync(`/proc/net/${proto}`, 'utf8')
    .split('\n')
    .some((l) => {
      const [, addr, , state] = l.trim().split(/\s+/);
      return addr === local && (proto === 'udp' || state === '0A');
    });
}

export async function startRsyslog(opts: RsyslogOptions): Promise<Rsyslog> {
  const [tcpPort, udpPort] = (await freePorts(2)) as [number, number];
  const work = path.join(opts.dir, 'work');
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const out = path.join(opts.dir, 'messages.jsonl');
  const conf = path.join(opts.dir, 'rsyslog.conf');
  const pidFile = path.join(opts.dir, 'rsyslogd.pid');
  const q = JSON.stringify;
  writeFileSync(
    conf,
    [
      // maxMessageSize before the inputs: a record with many participant objects outgrows the default 8k
      `global(workDirectory=${q(work)} maxMessageSize="64k" net.enableDNS="off"`,
      `  DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile=${q(opts.ca)} DefaultNetstreamDriverCertFile=${q(opts.server.cert)} DefaultNetstreamDriverKeyFile=${q(opts.server.key)})`,
      // one worker: messages are written in the order received
      'main_queue(queue.workerThreads="1")',
      // Mode 1: TLS only; x509/certvalid: a client certificate signed by the CA, any name
      'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")',
      'module(load="imudp")',
      'template(name="jsonline" type="string" string="%jsonmesg%\\n")',
      // the inputs' own ruleset: nothing but what they received goes to the file
      `ruleset(name="audit") { action(type="omfile" file=${q(out)} template="jsonline") }`,
      `input(type="imtcp" port="${tcpPort}" address="127.0.0.1" ruleset="audit")`,
      `input(type="imudp" port="${udpPort}" address="127.0.0.1" ruleset="audit")`,
      '',
    ].join('\n'),
  );
  let stderr = '';
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', pidFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d) => (stderr += d));
    trackChild(child);
    // the inputs bind their sockets before their threads run: the kernel queues connections and datagrams until then
    for (const t = Date.now(); !(existsSync(pidFile) && bound('tcp', tcpPort) && bound('udp', udpPort)); await sleep(50)) {
      if (exited(child)) throw new Error(`rsyslogd exited (${child.exitCode ?? child.signalCode}): ${stderr.slice(-1000)}`);
      if (Date.now() - t > 10_000) throw new Error(`rsyslogd: TLS port ${tcpPort} or UDP port ${udpPort} not bound within 10 s: ${stderr.slice(-1000)}`);
    }
  };
  await launch();
  const messages = () =>
    existsSync(out)
      ? readFileSync(out, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as ParsedSyslog)
      : [];
  return {
    tcpPort,
    udpPort,
    log: () => stderr,
    messages,
    async waitFor(n, ms = 20_000) {
      for (const t = Date.now(); ; await sleep(50)) {
        const m = messages();
        if (m.length >= n) return m;
        if (Date.now() - t > ms) throw new Error(`rsyslog wrote ${m.length} messages, not ${n}, within ${ms} ms: ${stderr.slice(-1000)}`);
      }
    },
    stop: () => stopChild(child, 10_000, 'SIGTERM'),
    restart: launch,
  };
}

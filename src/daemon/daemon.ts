import type { Server } from 'node:net'
import type { Libp2p } from '@libp2p/interface'
import { FileTreeRecords } from '../sync/tree-record.js'
import { handleControlStream } from '../../protocols/control/target-handler.js'
import { CONTROL_PROTOCOL, DEFAULT_STALL_TIMEOUT_MS, MAX_INBOUND_STREAMS as CONTROL_STREAMS } from '../../protocols/control/consts.js'
import { handleRelayStream } from '../../protocols/relay/handler.js'
import { handleProbeStream } from '../../protocols/probe/handler.js'
import { PROBE_PROTOCOL, MAX_INBOUND_STREAMS as PROBE_STREAMS } from '../../protocols/probe/consts.js'
import { asBulkReceiver } from '../node/bulk-stream.js'
import { RELAY_PROTOCOL, MAX_INBOUND_STREAMS as RELAY_STREAMS } from '../../protocols/relay/consts.js'
import { handleTaskStream, runRemoteTask, TASK_PROTOCOL, TaskSchema } from '../../protocols/task/index.js'
import { TrustList } from '../home/trust.js'
import { loadSwarmKey } from '../home/swarm-key.js'
import { loadOrCreateKey } from '../identity/identity.js'
import { createNode, type MuxerName } from '../node/create-node.js'
import { SessionRegistry } from '../sync/sessions.js'
import { runSync, TaskError } from '../sync/run-sync.js'
import { parseTarget } from '../node/targets.js'
import { signerFor } from '../sync/receipt.js'
import { serveLocalApi, socketPath } from './local-api.js'
import { PeerTracker } from './peer-tracker.js'
import { unlink } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { LaggardMemory } from '../home/laggards.js'

export interface DaemonOptions {
  home: string
  listen: string[]
  mdns: boolean
  trust: string[]
  trustAll: boolean
  /** destinations this daemon accepts; empty = any absolute path */
  allowedRoots: string[]
  muxers?: MuxerName[]
  bootstrap?: string[]
  relayService?: boolean
  stallMs?: number
  log: (msg: string) => void
}

/** A gosync node: serves control, relay and task protocols, and the local CLI socket. */
export class Daemon {
  node?: Libp2p
  private server?: Server
  readonly sessions = new SessionRegistry()
  /** tasks' work that runs after their report (hash-cache saves): finished before stop() ends */
  private readonly afterReports = new Set<Promise<void>>()
  readonly trust: TrustList

  constructor (readonly opts: DaemonOptions) {
    this.trust = new TrustList(opts.home, opts.trust, opts.trustAll)
  }

  async start (): Promise<void> {
    const { opts } = this
    const stallMs = opts.stallMs ?? DEFAULT_STALL_TIMEOUT_MS
    const privateKey = await loadOrCreateKey(opts.home)
    const node = await createNode({ privateKey, listen: opts.listen, mdns: opts.mdns, muxers: opts.muxers, swarmKey: await loadSwarmKey(opts.home), bootstrap: opts.bootstrap, relayService: opts.relayService })
    this.node = node
    const isTrusted = (p: string): boolean => this.trust.isTrusted(p)
    const sourceOpts = {
      hashCacheDir: join(opts.home, 'hashcache'),
      laggards: new LaggardMemory(opts.home),
      afterReport: (work: Promise<void>): void => {
        this.afterReports.add(work)
        void work.finally(() => { this.afterReports.delete(work) })
      }
    }
    const trees = new FileTreeRecords(join(opts.home, 'trees'))
    const tracker = new PeerTracker(node, isTrusted)
    await node.handle(CONTROL_PROTOCOL, async (stream, connection) => {
      await handleControlStream(stream, connection, { node, sessions: this.sessions, isTrusted, allowedRoots: opts.allowedRoots, home: opts.home, stallMs, trees, sign: signerFor(privateKey), log: opts.log })
    }, { maxInboundStreams: CONTROL_STREAMS, runOnLimitedConnection: true })
    await node.handle(RELAY_PROTOCOL, async (stream, connection) => {
      asBulkReceiver(stream)
      await handleRelayStream(node, stream, connection, this.sessions, stallMs)
    }, { maxInboundStreams: RELAY_STREAMS, maxOutboundStreams: RELAY_STREAMS, runOnLimitedConnection: true })
    await node.handle(PROBE_PROTOCOL, async (stream, connection) => {
      await handleProbeStream(stream, connection, this.sessions)
    }, { maxInboundStreams: PROBE_STREAMS, runOnLimitedConnection: true })
    await node.handle(TASK_PROTOCOL, async (stream, connection) => {
      await handleTaskStream(node, stream, connection, isTrusted, {
        home: opts.home,
        roots: opts.allowedRoots,
        // a task's source is locked like a destination: no session writes in it or over it meanwhile
        hold: (src) => {
          const id = `task-${randomBytes(8).toString('hex')}`
          this.sessions.lockDestination(src, id)
          return () => { this.sessions.unlock(src, id) }
        }
      }, sourceOpts)
    }, { runOnLimitedConnection: true })
    this.server = await serveLocalApi(opts.home, async (req, send, gone) => {
      if (req.type === 'status') {
        send({ type: 'status', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })
        return
      }
      if (req.type === 'peers') {
        send({ type: 'peers', peers: await tracker.list() })
        return
      }
      if (req.type !== 'sync' && req.type !== 'remote-sync') {
        send({ type: 'error', code: 'usage', message: `unknown request ${JSON.stringify((req as { type?: unknown }).type)}` })
        return
      }
      const parsed = TaskSchema.safeParse(req.task)
      if (!parsed.success) { send({ type: 'error', code: 'usage', message: `bad task: ${parsed.error.issues[0]?.message}` }); return }
      try {
        for (const t of [...parsed.data.targets, ...(req.type === 'remote-sync' ? [req.from] : [])]) parseTarget(t)
      } catch (err) {
        send({ type: 'error', code: 'usage', message: (err as Error).message })
        return
      }
      try {
        const onEvent = (event: unknown): void => { send({ type: 'event', event }) }
        // a CLI that goes away (Ctrl-C) cancels its task
        const report = req.type === 'sync' ? await runSync(node, parsed.data, onEvent, { ...sourceOpts, signal: gone }) : await runRemoteTask(node, req.from, parsed.data, onEvent, gone)
        send({ type: 'report', report })
      } catch (err) {
        send({ type: 'error', code: err instanceof TaskError || (err as Error).name === 'TaskRefusedError' ? 'task' : 'failed', message: (err as Error).message })
      }
    })
  }

  async stop (): Promise<void> {
    await new Promise<void>(resolve => { this.server?.close(() => { resolve() }) ?? resolve() })
    await unlink(socketPath(this.opts.home)).catch(() => {})
    await this.node?.stop()
    // tasks still running when the node stopped may hand over their saves after this began
    while (this.afterReports.size > 0) await Promise.all(this.afterReports)
  }
}

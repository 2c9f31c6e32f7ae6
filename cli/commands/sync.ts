import { isAbsolute, join, resolve } from 'node:path'
// Only what talking to a running daemon needs is imported up front; the libp2p stack
// (~0.4 s to load) is imported only when this process must be the source itself.
import { connectLocal, requestLocal } from '../../src/daemon/local-api.js'
import { resolveHome } from '../../src/home/home.js'
import { AddressBook } from '../../src/home/address-book.js'
import type { SyncEvent, SyncReport } from '../../src/sync/report.js'
import type { SyncTask } from '../../src/sync/run-sync.js'
import { EXIT, UsageError } from '../exit-codes.js'
import { ProgressLine, renderReport } from '../render.js'
import { LaggardMemory } from '../../src/home/laggards.js'

export interface SyncArgs {
  targets?: string
  src?: string
  dst?: string
  delete: boolean
  compress: boolean
  dryRun: boolean
  atomic?: boolean
  json: boolean
  from?: string
  home?: string
  fanout?: number
  stallTimeout?: number
}

/** Checks that need no libp2p code; targets are checked where they are parsed (checkTargets, or by the daemon). */
export function buildTask (a: SyncArgs): SyncTask {
  if (a.targets == null || String(a.targets).trim() === '') throw new UsageError('missing -t/--targets')
  if (a.src == null || a.src === '') throw new UsageError('missing --src')
  if (a.dst == null || a.dst === '') throw new UsageError('missing --dst')
  if (a.from != null && !isAbsolute(String(a.src))) throw new UsageError('with --from, --src must be an absolute path (it names a directory on that host)')
  if (!isAbsolute(String(a.dst))) throw new UsageError('--dst must be an absolute path (it names a directory on every target)')
  const targets = String(a.targets).split(',').map(s => s.trim()).filter(s => s !== '')
  if (targets.length === 0) throw new UsageError('no targets in -t')
  if (a.fanout != null && (!Number.isInteger(a.fanout) || a.fanout < 1 || a.fanout > 64)) throw new UsageError('--fanout must be an integer from 1 to 64')
  if (a.stallTimeout != null && !(a.stallTimeout >= 1 && a.stallTimeout <= 3600)) throw new UsageError('--stall-timeout must be 1 to 3600 seconds')
  return {
    src: resolve(String(a.src)),
    dst: String(a.dst),
    targets,
    delete: a.delete,
    compress: a.compress,
    dryRun: a.dryRun,
    atomic: a.atomic === true ? true : undefined,
    fanout: a.fanout,
    stallMs: a.stallTimeout != null ? a.stallTimeout * 1000 : undefined
  }
}

async function checkTargets (task: SyncTask, from?: string): Promise<void> {
  const { parseTarget } = await import('../../src/node/targets.js')
  for (const t of task.targets) {
    try { parseTarget(t) } catch (err) { throw new UsageError((err as Error).message) }
  }
  if (from != null) {
    try { parseTarget(from) } catch (err) { throw new UsageError(`--from: ${(err as Error).message}`) }
  }
}

class DaemonTaskError extends Error {
  override name = 'DaemonTaskError'
  constructor (readonly code: string, message: string) { super(message) }
}

export async function syncCommand (a: SyncArgs): Promise<number> {
  const home = resolveHome(a.home)
  // names from the address book work wherever a PeerId or a multiaddr does
  const book = new AddressBook(home)
  if (a.targets != null) a = { ...a, targets: (await Promise.all(String(a.targets).split(',').map(async t => await book.resolve(t.trim())))).join(',') }
  if (a.from != null) a = { ...a, from: await book.resolve(a.from) }
  const task = buildTask(a)
  const progress = !a.json && process.stderr.isTTY ? new ProgressLine(process.stderr) : undefined
  const onEvent = (e: SyncEvent): void => {
    if (progress != null) progress.onEvent(e)
    else if (e.type === 'warning' && !a.json) process.stderr.write(`warning: ${e.message}\n`)
  }
  let report: SyncReport | undefined
  // Ctrl-C cancels the task (wherever it runs: the daemon sees this client go); a second one quits at once
  const interrupt = new AbortController()
  let sock: Awaited<ReturnType<typeof connectLocal>> | undefined
  const onSignal = (): void => {
    if (interrupt.signal.aborted) process.exit(EXIT.INTERRUPTED)
    progress?.clear()
    process.stderr.write('gosync: interrupted: cancelling the task (each target keeps the file it was receiving, to continue next time)\n')
    interrupt.abort()
    // (a destroyed socket may leave the report loop waiting on nothing: the process then ends by itself)
    process.exitCode = EXIT.INTERRUPTED
    sock?.destroy()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    sock = await connectLocal(home).catch(() => undefined)
    if (interrupt.signal.aborted) { sock?.destroy(); return EXIT.INTERRUPTED }
    if (sock != null) {
      await requestLocal(sock, a.from != null ? { type: 'remote-sync', from: a.from, task } : { type: 'sync', task }, (r) => {
        if (r.type === 'event') onEvent(r.event as SyncEvent)
        else if (r.type === 'report') report = r.report as SyncReport
        else if (r.type === 'error') throw new DaemonTaskError(r.code, r.message)
      })
      if (interrupt.signal.aborted) return EXIT.INTERRUPTED
      if (report == null) throw new Error('the daemon closed the connection without a report')
    } else {
      // no daemon in this home: this process is the source (or the client of --from)
      await checkTargets(task, a.from)
      const [{ createNode }, { loadOrCreateKey }, { runSync }, { runRemoteTask }] = await Promise.all([
        import('../../src/node/create-node.js'), import('../../src/identity/identity.js'),
        import('../../src/sync/run-sync.js'), import('../../protocols/task/index.js')
      ])
      const { loadSwarmKey } = await import('../../src/home/swarm-key.js')
      const node = await createNode({ privateKey: await loadOrCreateKey(home), listen: [], mdns: false, swarmKey: await loadSwarmKey(home) })
      try {
        report = a.from != null ? await runRemoteTask(node, a.from, task, onEvent, interrupt.signal) : await runSync(node, task, onEvent, { hashCacheDir: join(home, 'hashcache'), laggards: new LaggardMemory(home), signal: interrupt.signal })
      } finally {
        await node.stop()
      }
    }
  } catch (err) {
    progress?.clear()
    if (interrupt.signal.aborted) return EXIT.INTERRUPTED
    const e = err as Error
    if (e instanceof UsageError) throw e
    if (e instanceof DaemonTaskError && e.code === 'usage') throw new UsageError(e.message)
    if (a.json) process.stdout.write(JSON.stringify({ ok: false, error: e.message }) + '\n')
    process.stderr.write(`gosync: ${e.message}\n`)
    return EXIT.TASK_FAILED
  }
  progress?.clear()
  process.stdout.write(a.json ? JSON.stringify(report, null, 2) + '\n' : renderReport(report!))
  if (interrupt.signal.aborted) return EXIT.INTERRUPTED
  return report!.ok ? EXIT.OK : EXIT.TARGET_FAILED
}

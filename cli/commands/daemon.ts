import { resolve } from 'node:path'
import { Daemon } from '../../src/daemon/daemon.js'
import { setDirectIo } from '../../src/fs/direct-io.js'
import { checkPeerId } from '../../src/home/trust.js'
import { resolveHome } from '../../src/identity/identity.js'
import type { MuxerName } from '../../src/node/create-node.js'
import { noiseCipher } from '../../src/node/noise-crypto.js'
import { UsageError } from '../exit-codes.js'

export interface DaemonArgs {
  home?: string
  listen: string[]
  mdns: boolean
  trust: string[]
  trustAll: boolean
  allowRoot: string[]
  muxer: string[]
  stallTimeout?: number
  bootstrap: string[]
  relayService: boolean
  directIo: boolean
}

export async function daemonCommand (a: DaemonArgs): Promise<number> {
  const muxers = a.muxer.map(m => {
    if (m !== 'yamux' && m !== 'mplex') throw new UsageError(`--muxer must be yamux or mplex, got ${m}`)
    return m as MuxerName
  })
  const log = (msg: string): void => { process.stderr.write(`gosync: ${msg}\n`) }
  if (a.trustAll) log('WARNING: --trust-all: any peer that can reach this daemon may write to it. Use only in a closed lab.')
  if (!process.execArgv.some(f => f.startsWith('--initial-old-space-size'))) log('note: node was started without --initial-old-space-size=64 (the gosync command passes it): transfers may spend a third more CPU in garbage collection')
  setDirectIo(a.directIo)
  if (noiseCipher.name !== 'system-openssl') log(`note: Noise runs on Node's own ChaCha20-Poly1305 (${noiseCipher.detail}): relaying costs more CPU`)
  if (a.allowRoot.length === 0) log('note: no --allow-root given: trusted peers may write to any absolute path this user can write')
  const daemon = new Daemon({
    home: resolveHome(a.home),
    listen: a.listen.length > 0 ? a.listen : ['/ip4/0.0.0.0/tcp/4001'],
    mdns: a.mdns,
    trust: a.trust.map(checkPeerId),
    trustAll: a.trustAll,
    allowedRoots: a.allowRoot.map(r => resolve(r)),
    muxers: muxers.length > 0 ? muxers : undefined,
    stallMs: a.stallTimeout != null ? a.stallTimeout * 1000 : undefined,
    bootstrap: a.bootstrap.map((b) => {
      if (!b.includes('/p2p/')) throw new UsageError(`--bootstrap ${b}: the multiaddr must include /p2p/<PeerId>`)
      return b
    }),
    relayService: a.relayService,
    log
  })
  await daemon.start()
  const node = daemon.node!
  process.stdout.write(`peer-id: ${node.peerId.toString()}\n`)
  for (const ma of node.getMultiaddrs()) process.stdout.write(`listen: ${ma.toString()}\n`)
  process.stdout.write('ready\n')
  await new Promise<void>((resolveStop) => {
    const stop = (): void => { resolveStop() }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  log('shutting down')
  await daemon.stop()
  return 0
}

#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node --initial-old-space-size=64 --max-semi-space-size=2
// gosync makes no TLS connection; node 20 parses the bundle NODE_EXTRA_CA_CERTS names at
// start-up, before any of our code runs: ~45 ms of every command where a system sets it.
// V8 heap sizing for a daemon that moves data (docs/PERFORMANCE.md, "V8 heap sizing"):
// - without the first flag V8 sizes the old generation to the ~15 MB a daemon keeps, and in
//   about half of all transfers (always after an idle spell) runs a full GC for every ~1 MB
//   promoted: ~90 per GiB on each side, a third more CPU;
// - the second keeps the young generation small: 10-15 MB less peak RSS, same speed.
// Launchers that call node themselves read the flags from this line.
import '../src/polyfill.js'
import { cac } from 'cac'
import { EXIT, UsageError } from './exit-codes.js'
import { translateSeedArgs } from './seed-args.js'

const many = { type: [String], default: [] }

async function main (argv: string[]): Promise<number> {
  const cli = cac('gosync')
  let action: (() => Promise<number>) | undefined

  cli.command('daemon', 'Run a gosync node until SIGINT/SIGTERM')
    .option('--home <dir>', 'state directory (default $GOSYNC_HOME or ~/.gosync)')
    .option('--listen <multiaddr>', 'listen address, repeatable (default /ip4/0.0.0.0/tcp/4001)', many)
    .option('--no-mdns', 'do not discover or announce peers on the LAN')
    .option('--trust <peerid>', 'also trust this peer (repeatable)', many)
    .option('--trust-all', 'trust every peer (closed labs only)')
    .option('--allow-root <dir>', 'accept destinations only under this directory (repeatable)', many)
    .option('--muxer <name>', 'stream muxers to offer, in order: yamux, mplex (default both)', many)
    .option('--stall-timeout <seconds>', 'fail a peer that makes no progress for this long (default 30)')
    .option('--bootstrap <multiaddr>', 'a known peer to stay connected to: peer routing (DHT) and relaying across networks (repeatable)', many)
    .option('--relay-service', 'relay connections for gosync peers that cannot reach each other directly')
    .option('--no-direct-io', 'write large files through the page cache too (default: files of 8 MiB and more with O_DIRECT)')
    .action((o) => { action = async () => await (await import('./commands/daemon.js')).daemonCommand({ ...o, bootstrap: [o.bootstrap].flat(), relayService: o.relayService === true, directIo: o.directIo !== false, trustAll: o.trustAll === true, mdns: o.mdns !== false, listen: [o.listen].flat(), trust: [o.trust].flat(), allowRoot: [o.allowRoot].flat(), muxer: [o.muxer].flat(), stallTimeout: num(o.stallTimeout) }) })

  cli.command('id', "Print this home's PeerId, then the daemon's addresses if it runs")
    .option('--home <dir>', 'state directory')
    .action((o) => { action = async () => await (await import('./commands/id.js')).idCommand(o) })

  cli.command('trust <peerid>', 'Trust a peer to start tasks and send manifests to this node')
    .option('--home <dir>', 'state directory')
    .action((peer, o) => { action = async () => await (await import('./commands/trust.js')).trustCommand(String(peer), o) })

  cli.command('swarm-key', 'Create <home>/swarm.key (a private network: copy it to every host)')
    .option('--home <dir>', 'state directory')
    .action((o) => {
      action = async () => {
        const [{ createSwarmKey }, { ensureHome, resolveHome }] = await Promise.all([import('../src/home/swarm-key.js'), import('../src/home/home.js')])
        const home = resolveHome(o.home)
        await ensureHome(home)
        const r = await createSwarmKey(home)
        process.stdout.write(`${r.path}${r.created ? '' : ' (already there, kept)'}\n`)
        return EXIT.OK
      }
    })

  cli.command('untrust <peerid>', 'Stop trusting a peer')
    .option('--home <dir>', 'state directory')
    .action((peer, o) => { action = async () => await (await import('./commands/trust.js')).untrustCommand(String(peer), o) })

  cli.command('peers [...args]', 'List known peers; `peers add NAME MULTIADDR` / `peers rm NAME` edit the address book')
    .option('--home <dir>', 'state directory')
    .option('--json', 'print JSON')
    .action((args, o) => { action = async () => await (await import('./commands/peers.js')).peersCommand((args as unknown[]).map(String), { ...o, json: o.json === true }) })

  cli.command('sync', 'Push --src to --dst on every target')
    .option('-t, --targets <list>', 'comma-separated multiaddrs (…/p2p/<PeerId>) or PeerIds')
    .option('--src <dir>', 'source directory')
    .option('--dst <dir>', 'destination directory on every target (absolute)')
    .option('-d, --delete', 'delete what the source does not have')
    .option('-z, --compress', 'compress file data on the wire')
    .option('-n, --dry-run', 'report what would change, change nothing')
    .option('--from <peer>', 'run the task on this remote daemon (it must trust this home)')
    .option('--json', 'print one JSON report on stdout')
    .option('--home <dir>', 'state directory')
    .option('--atomic', 'stage on every target; switch all only when every target has its whole tree verified, else none')
    .option('--fanout <n>', 'children per node in a relay tree (default 1: a chain)')
    .option('--stall-timeout <seconds>', 'fail a target that makes no progress for this long (default 30)')
    .action((o) => {
      action = async () => await (await import('./commands/sync.js')).syncCommand({
        ...o, delete: o.delete === true, compress: o.compress === true, dryRun: o.dryRun === true, atomic: o.atomic === true, json: o.json === true,
        targets: o.targets == null ? undefined : String(o.targets), fanout: num(o.fanout), stallTimeout: num(o.stallTimeout)
      })
    })

  cli.help()
  cli.version('0.1.0')
  cli.parse(['node', 'gosync', ...translateSeedArgs(argv)], { run: false })
  if (cli.options.help === true || cli.options.version === true) return EXIT.OK
  if (cli.matchedCommand == null) {
    if (cli.args.length > 0) throw new UsageError(`unknown command: ${cli.args[0]}`)
    cli.outputHelp()
    return EXIT.USAGE
  }
  await cli.runMatchedCommand()
  return action != null ? await action() : EXIT.OK
}

function num (v: unknown): number | undefined {
  if (v == null || v === true) return undefined
  const n = Number(v)
  if (!Number.isFinite(n)) throw new UsageError(`not a number: ${String(v)}`)
  return n
}

// a closed pipe on stdout (e.g. `gosync id | head -1`) is not an error worth a stack trace
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0) })

main(process.argv.slice(2)).then((code) => {
  // exit once output is flushed, even if a library left a handle open
  process.exitCode = code
  setTimeout(() => process.exit(code), 1000).unref()
}, (err: Error) => {
  const usage = err instanceof UsageError || err.name === 'CACError'
  process.stderr.write(`gosync: ${err.message}\n`)
  process.exit(usage ? EXIT.USAGE : EXIT.TASK_FAILED)
})

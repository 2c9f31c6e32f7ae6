import { connectLocal, requestLocal } from '../../src/daemon/local-api.js'
import type { KnownPeer } from '../../src/daemon/peer-tracker.js'
import { AddressBook, AddressBookError } from '../../src/home/address-book.js'
import { TrustList } from '../../src/home/trust.js'
import { ensureHome, resolveHome } from '../../src/home/home.js'
import { UsageError } from '../exit-codes.js'

/** `gosync peers [add NAME TARGET | rm NAME] [--json]` */
export async function peersCommand (args: string[], a: { home?: string, json?: boolean }): Promise<number> {
  const home = resolveHome(a.home)
  await ensureHome(home)
  const book = new AddressBook(home)
  const [verb, name, target] = args
  try {
    if (verb === 'add') {
      if (name == null || target == null || args.length > 3) throw new UsageError('usage: gosync peers add NAME MULTIADDR|PEERID')
      const e = await book.add(name, target)
      process.stdout.write(`${name} = ${e.addrs[0] ?? e.peer}\n`)
      return 0
    }
    if (verb === 'rm' || verb === 'remove') {
      if (name == null || args.length > 2) throw new UsageError('usage: gosync peers rm NAME')
      process.stdout.write((await book.remove(name)) ? `removed ${name}\n` : `no peer named ${name}\n`)
      return 0
    }
    if (verb != null) throw new UsageError(`unknown peers command ${JSON.stringify(verb)} (add, rm)`)
  } catch (err) {
    if (err instanceof AddressBookError || (err as Error).name === 'InvalidPeerIdError') throw new UsageError((err as Error).message)
    throw err
  }

  const names = await book.all()
  const trust = new TrustList(home)
  let known: KnownPeer[] = []
  const sock = await connectLocal(home).catch(() => undefined)
  if (sock != null) {
    await requestLocal(sock, { type: 'peers' }, (r) => { if (r.type === 'peers') known = r.peers as KnownPeer[] })
  }
  const nameOf = new Map(Object.entries(names).map(([n, e]) => [e.peer, n]))
  const rows = known.map(k => ({ ...k, name: nameOf.get(k.peer) }))
  for (const [n, e] of Object.entries(names)) {
    if (!rows.some(r => r.peer === e.peer)) rows.push({ peer: e.peer, addrs: e.addrs, how: ['address book'], lastSeen: 0, trusted: trust.isTrusted(e.peer), name: n })
  }
  if (a.json === true) {
    process.stdout.write(JSON.stringify({ daemon: sock != null, peers: rows }, null, 2) + '\n')
    return 0
  }
  if (sock == null) process.stderr.write('gosync: no daemon runs in this home: showing the address book only\n')
  for (const r of rows) {
    const seen = r.lastSeen > 0 ? new Date(r.lastSeen).toISOString() : '-'
    process.stdout.write(`${r.peer}  ${r.name ?? '-'}  ${r.trusted ? 'trusted' : 'untrusted'}  ${r.how.join(',') || '-'}  ${seen}  ${r.addrs.join(' ')}\n`)
  }
  return 0
}

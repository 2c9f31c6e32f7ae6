import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const ADDRESS_BOOK_FILE = 'peers.json'

export class AddressBookError extends Error {
  override name = 'AddressBookError'
}

export interface NamedPeer { peer: string, addrs: string[] }

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/**
 * Names for peers, kept in <home>/peers.json: a name works wherever a PeerId or a
 * multiaddr does (targets, --from). Names are letters, digits, '.', '_' and '-', and
 * never look like a PeerId or a multiaddr.
 */
export class AddressBook {
  constructor (readonly home: string) {}
  get path (): string { return join(this.home, ADDRESS_BOOK_FILE) }

  async all (): Promise<Record<string, NamedPeer>> {
    try {
      const doc = JSON.parse(await readFile(this.path, 'utf8')) as { names?: Record<string, NamedPeer> }
      return doc.names ?? {}
    } catch (err: any) {
      if (err.code === 'ENOENT') return {}
      throw new AddressBookError(`cannot read ${this.path}: ${err.message}`)
    }
  }

  private async save (names: Record<string, NamedPeer>): Promise<void> {
    const tmp = `${this.path}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify({ names }, null, 2) + '\n', { mode: 0o600 })
    await rename(tmp, this.path)
  }

  /** `target`: a multiaddr ending in /p2p/<PeerId>, or a bare PeerId. */
  async add (name: string, target: string): Promise<NamedPeer> {
    if (!NAME.test(name) || name.startsWith('12D3Koo') || name.startsWith('Qm')) throw new AddressBookError(`bad name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-', and nothing that looks like a PeerId`)
    let parsed
    try {
      parsed = (await import('../node/targets.js')).parseTarget(target)
    } catch (err) {
      throw new AddressBookError((err as Error).message)
    }
    const entry: NamedPeer = { peer: parsed.peer, addrs: target.startsWith('/') ? [parsed.dial.toString()] : [] }
    const names = await this.all()
    names[name] = entry
    await this.save(names)
    return entry
  }

  async remove (name: string): Promise<boolean> {
    const names = await this.all()
    if (names[name] == null) return false
    delete names[name]
    await this.save(names)
    return true
  }

  /** A name → its first multiaddr (or its PeerId); anything else is returned unchanged. */
  async resolve (target: string): Promise<string> {
    if (!NAME.test(target)) return target
    const e = (await this.all())[target]
    if (e == null) return target
    return e.addrs[0] ?? e.peer
  }
}

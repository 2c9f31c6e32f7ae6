import type { Libp2p } from '@libp2p/interface'

export interface KnownPeer {
  peer: string
  addrs: string[]
  /** how this node learned of it: mdns, connection (it dialed us or we dialed it) */
  how: string[]
  /** ms since the epoch */
  lastSeen: number
  trusted: boolean
}

/** Remembers how and when this daemon met each peer, for `gosync peers`. */
export class PeerTracker {
  private readonly seen = new Map<string, { how: Set<string>, lastSeen: number }>()

  constructor (private readonly node: Libp2p, private readonly isTrusted: (p: string) => boolean) {
    node.addEventListener('peer:discovery', (evt) => { this.note(evt.detail.id.toString(), 'mdns') })
    node.addEventListener('peer:connect', (evt) => { this.note(evt.detail.toString(), 'connection') })
  }

  private note (peer: string, how: string): void {
    const e = this.seen.get(peer) ?? { how: new Set<string>(), lastSeen: 0 }
    e.how.add(how)
    e.lastSeen = Date.now()
    this.seen.set(peer, e)
  }

  async list (): Promise<KnownPeer[]> {
    const out: KnownPeer[] = []
    for (const p of await this.node.peerStore.all()) {
      const id = p.id.toString()
      if (id === this.node.peerId.toString()) continue
      const s = this.seen.get(id)
      if (this.node.getConnections(p.id).length > 0) this.note(id, 'connection')
      out.push({ peer: id, addrs: p.addresses.map(a => a.multiaddr.toString()), how: [...(s?.how ?? [])], lastSeen: this.seen.get(id)?.lastSeen ?? 0, trusted: this.isTrusted(id) })
    }
    return out.sort((a, b) => b.lastSeen - a.lastSeen)
  }
}

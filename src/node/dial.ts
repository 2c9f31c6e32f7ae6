import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'

/** The hop protocol of circuit relay v2: peers that speak it can relay for us. */
const RELAY_HOP = '/libp2p/circuit/relay/0.2.0/hop'

function peerOf (target: PeerId | Multiaddr | Multiaddr[]): string | undefined {
  if (Array.isArray(target)) target = target[0]
  if (target == null) return undefined
  if ('getComponents' in target) return target.getComponents().findLast(c => c.name === 'p2p')?.value
  return target.toString()
}

/**
 * Dial a peer the direct way first (the addresses given, else what the peer store or the
 * DHT knows), then through every connected peer that offers a relay: the circuit form
 * /p2p/<relay>/p2p-circuit/p2p/<peer> needs no address of the relay's that only makes sense
 * from the relay's side of the network. Noise still runs end to end over the circuit.
 */
export async function dialPeer (node: Libp2p, target: PeerId | Multiaddr | Multiaddr[], signal: AbortSignal): Promise<Connection> {
  try {
    return await node.dial(target, { signal })
  } catch (first) {
    const peer = peerOf(target)
    if (peer == null || signal.aborted) throw first
    const relays: string[] = []
    for (const c of node.getConnections()) {
      const id = c.remotePeer.toString()
      if (id === peer || relays.includes(id)) continue
      const info = await node.peerStore.get(c.remotePeer).catch(() => undefined)
      if (info?.protocols.includes(RELAY_HOP) === true) relays.push(id)
    }
    if (relays.length === 0) throw first
    try {
      return await node.dial(relays.map(r => multiaddr(`/p2p/${r}/p2p-circuit/p2p/${peer}`)), { signal })
    } catch {
      throw first
    }
  }
}

/** A target as the source names it to other nodes: its PeerId and the addresses the source reached it at. */
export interface KnownPeer {
  peer: string
  addrs: string[]
}

/**
 * Dial `p` at the addresses given; they are the source's view and may not work from here
 * (another subnet, a relay address), so then by its PeerId alone (dialPeer: what this node
 * knows of it, then relays).
 */
export async function dialKnownPeer (node: Libp2p, p: KnownPeer, signal: AbortSignal): Promise<Connection> {
  if (p.addrs.length === 0) return await dialPeer(node, peerIdFromString(p.peer), signal)
  try {
    return await dialPeer(node, p.addrs.map(a => multiaddr(a)), signal)
  } catch (err) {
    if (signal.aborted) throw err
    return await dialPeer(node, peerIdFromString(p.peer), signal)
  }
}

import type { Libp2p } from '@libp2p/interface'
import type { TargetSession } from '../../src/sync/target-session.js'
import { ChildLink, RelayRefusedError, type ChildTarget } from './child-link.js'

/**
 * A relay node's links to its children, opened as soon as its plan names them. Every node of
 * a tree takes its plan at about the same time, so the whole tree is connected in about one
 * hop's time; opened when the node's own parent stream arrives, a chain would be set up one
 * hop after another (~10 ms per hop measured in the lab, more over real round trips).
 * A child may get the `hello` before its own plan: the relay handler waits for the plan.
 */
const early = new WeakMap<TargetSession, Map<string, Promise<ChildLink>>>()

/** Start opening the links to the children the session's plan names (no-op without any). */
export function openChildLinksEarly (node: Libp2p, session: TargetSession, stallMs: number): void {
  const relay = session.relay
  if (relay == null || relay.children.length === 0) return
  early.set(session, openLinks(node, relay.children, session.id, relay.classId, stallMs))
}

/** The links to the children of `session`: the early ones, or opened now (see linksTo). */
export async function takeChildLinks (node: Libp2p, session: TargetSession, stallMs: number): Promise<ChildLink[]> {
  const relay = session.relay!
  const opened = early.get(session)
  early.delete(session)
  return await linksTo(node, relay.children, opened, session.id, relay.classId, stallMs, (peer, error) => { session.onChildFailed?.(peer, error) })
}

/**
 * The links to `children`, each the one opened in advance (`opened`, by peer), or opened now
 * when there is none or the child refused it (an implementation that refuses a hello before
 * its own plan). Any other failure is that child's, reported through `onFailed` and left out:
 * a second try would only double the wait for a child that cannot be reached, and an accepted
 * link that died cannot be replaced (a child takes one relay stream per session).
 */
export async function linksTo (node: Libp2p, children: ChildTarget[], opened: ReadonlyMap<string, Promise<ChildLink>> | undefined, session: string, classId: number, stallMs: number, onFailed: (peer: string, error: string) => void): Promise<ChildLink[]> {
  const links = await Promise.all(children.map(async (c) => {
    try {
      const inAdvance = opened?.get(c.peer)
      if (inAdvance != null) {
        try {
          return await inAdvance
        } catch (err) {
          if (!(err instanceof RelayRefusedError)) throw err
        }
      }
      return await ChildLink.open(node, c, session, classId, stallMs)
    } catch (err) {
      onFailed(c.peer, `cannot open relay stream: ${(err as Error).message}`)
      return undefined
    }
  }))
  return links.filter((l): l is ChildLink => l != null)
}

/** Start opening links to `children` (also the source's, once it has planned the class): peer → link. */
export function openLinks (node: Libp2p, children: ChildTarget[], session: string, classId: number, stallMs: number): Map<string, Promise<ChildLink>> {
  const links = new Map<string, Promise<ChildLink>>()
  for (const c of children) {
    const p = ChildLink.open(node, c, session, classId, stallMs)
    p.catch(() => {}) // the sender takes the outcome
    links.set(c.peer, p)
  }
  return links
}

/** The session is over: links no receiver took are closed (their children fail their sessions). */
export function dropChildLinks (session: TargetSession, reason: Error): void {
  const links = early.get(session)
  early.delete(session)
  for (const p of links?.values() ?? []) p.then(l => { l.abort(reason) }, () => {})
}

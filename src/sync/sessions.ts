import { overlaps } from '../manifest/paths.js'
import type { TargetSession } from './target-session.js'

export class DestinationBusyError extends Error {
  override name = 'DestinationBusyError'
}

/**
 * Sessions a daemon serves as a target, by id (for the relay handler), and the
 * destinations in use: two sessions never write the same destination at once.
 */
export class SessionRegistry {
  private readonly byId = new Map<string, TargetSession>()
  private readonly busy = new Map<string, string>()

  /** `dst` as resolved (realpath of its deepest existing part): one directory has one key */
  lockDestination (dst: string, session: string): void {
    for (const [d, s] of this.busy) {
      if (overlaps(dst, d)) {
        throw new DestinationBusyError(`destination ${dst} is in use by session ${s}; try again when it ends`)
      }
    }
    this.busy.set(dst, session)
  }

  add (s: TargetSession): void { this.byId.set(s.id, s) }
  get (id: string): TargetSession | undefined { return this.byId.get(id) }

  /** (the destination stays locked until unlock(): its key is the resolved path, which only the handler knows) */
  remove (s: TargetSession): void {
    this.byId.delete(s.id)
  }

  unlock (dst: string, session: string): void {
    if (this.busy.get(dst) === session) this.busy.delete(dst)
  }

  get size (): number { return this.byId.size }
}

import type { Entry, Manifest, RootMeta } from './types.js'

/**
 * A manifest while the source's walk produces it: the root's metadata, then batches of
 * entries in manifest order, then the whole manifest (with its digest), or the scan's error.
 * Each reader (one per target) goes through every batch at its own pace, so a target's
 * manifest goes out while the tree is still being walked.
 */
export class ManifestStream {
  private rootMeta?: RootMeta
  private readonly batches: Array<readonly Entry[]> = []
  private manifest?: Manifest
  private error?: Error
  private wake: () => void = () => {}
  private changed: Promise<void> = this.nextChange()

  /** A stream that is already complete (a later round sends a manifest scanned before). */
  static of (manifest: Manifest): ManifestStream {
    const s = new ManifestStream()
    s.setRoot(manifest.root)
    if (manifest.entries.length > 0) s.push(manifest.entries)
    s.end(manifest)
    return s
  }

  setRoot (root: RootMeta): void {
    this.rootMeta = root
    this.notify()
  }

  /** The next entries of the walk, in manifest order. */
  push (entries: readonly Entry[]): void {
    this.batches.push(entries)
    this.notify()
  }

  /** The walk is over: `manifest` holds exactly the entries pushed. */
  end (manifest: Manifest): void {
    this.manifest = manifest
    this.notify()
  }

  /** The walk failed: readers get `err`. */
  fail (err: Error): void {
    this.error = err
    this.notify()
  }

  /** The root's metadata, known before any entry. */
  async root (): Promise<RootMeta> {
    for (;;) {
      if (this.rootMeta != null) return this.rootMeta
      if (this.error != null) throw this.error
      await this.changed
    }
  }

  /** Every batch, in order, as the walk produces them; ends when the walk has ended. */
  async * entries (): AsyncGenerator<readonly Entry[]> {
    for (let i = 0; ; ) {
      if (i < this.batches.length) { yield this.batches[i++]; continue }
      if (this.error != null) throw this.error
      if (this.manifest != null) return
      await this.changed
    }
  }

  /** The whole manifest, once the walk has ended. */
  async done (): Promise<Manifest> {
    for (;;) {
      if (this.error != null) throw this.error
      if (this.manifest != null) return this.manifest
      await this.changed
    }
  }

  private nextChange (): Promise<void> {
    return new Promise<void>(resolve => { this.wake = resolve })
  }

  private notify (): void {
    const wake = this.wake
    this.changed = this.nextChange()
    wake()
  }
}

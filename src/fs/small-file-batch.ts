import { execFile } from 'node:child_process'
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, futimesSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Entry } from '../manifest/types.js'
import { utimesValue } from '../manifest/time.js'
import { createMode, metadataSteps, tempNameIn } from './atomic-writer.js'

/** Files up to this size (verified in memory) take the batched path. */
export const SMALL_FILE_MAX = 64 * 1024
/** Start a batch's sync at once when this many files wait; otherwise after BATCH_DELAY_MS. */
const BATCH_FILES = 2048
const BATCH_DELAY_MS = 20

interface Waiting { temp: string, final: string, dev: number, resolve: () => void, reject: (err: unknown) => void }

/** syncfs(2) on the file systems holding these paths, by coreutils `sync -f` (Node has no syncfs). */
async function syncFileSystems (paths: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('sync', ['-f', '--', ...paths], { timeout: 10 * 60_000 }, (err, _out, stderr) => {
      if (err == null) { resolve(); return }
      // no `sync`, or one without -f: use fsync instead; anything else (EIO, ENOSPC, a
      // timeout) means the batch's data may not be on disk
      const unsupported = (err as NodeJS.ErrnoException).code === 'ENOENT' || /invalid option|unrecognized option/.test(String(stderr))
      reject(Object.assign(err, { unsupported }))
    })
  })
}

/**
 * Small files, already verified against their hash in memory, written with synchronous
 * calls (a few µs each, against tens of µs per call through the thread pool) under a temp
 * name in their final directory. They are renamed into place in batches, each after one
 * syncfs of the file systems involved: the same guarantee as fsync-then-rename per file
 * (no file is visible before its data is durable), at one journal commit per batch
 * instead of one per file. Without `sync -f`, each file of the batch is fsynced instead.
 */
export class SmallFileBatch {
  private waiting: Waiting[] = []
  private timer?: NodeJS.Timeout
  private running?: Promise<void>
  private syncfsWorks = true

  /** Write `data` (exactly the file's bytes) for `entry`; settles once it is at `finalPath`. */
  async write (finalPath: string, entry: Entry, data: readonly Uint8Array[]): Promise<void> {
    const temp = tempNameIn(dirname(finalPath))
    let fd: number | undefined
    let dev: number
    try {
      // O_EXCL: never opens an existing file or follows a planted symlink
      fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, createMode(entry.mode))
      for (const part of data) {
        let off = 0
        while (off < part.byteLength) off += writeSync(fd, part, off, part.byteLength - off)
      }
      const steps = metadataSteps(entry)
      if (steps.chown) fchownSync(fd, entry.uid!, entry.gid!)
      if (steps.chmod) fchmodSync(fd, entry.mode)
      futimesSync(fd, new Date(), utimesValue(entry))
      dev = fstatSync(fd).dev
      closeSync(fd)
      fd = undefined
    } catch (err) {
      if (fd != null) closeSync(fd)
      try { unlinkSync(temp) } catch {}
      throw err
    }
    await new Promise<void>((resolve, reject) => {
      this.waiting.push({ temp, final: finalPath, dev, resolve, reject })
      if (this.waiting.length >= BATCH_FILES) this.kick()
      else this.timer ??= setTimeout(() => { this.kick() }, BATCH_DELAY_MS)
    })
  }

  /** Make everything written so far durable and visible; resolves when done. */
  async flush (): Promise<void> {
    while (this.waiting.length > 0 || this.running != null) {
      this.kick()
      await this.running
    }
  }

  /** Start a batch unless one is running (the next starts when it ends: group commit). */
  private kick (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.running != null || this.waiting.length === 0) return
    const batch = this.waiting
    this.waiting = []
    this.running = this.commit(batch).finally(() => {
      this.running = undefined
      if (this.waiting.length > 0) this.kick()
    })
  }

  private async commit (batch: Waiting[]): Promise<void> {
    let synced = false
    if (this.syncfsWorks) {
      const oneEach = new Map<number, string>()
      for (const w of batch) if (!oneEach.has(w.dev)) oneEach.set(w.dev, w.temp)
      try {
        await syncFileSystems([...oneEach.values()])
        synced = true
      } catch (err) {
        if ((err as { unsupported?: boolean }).unsupported !== true) {
          const failure = new Error(`could not make the files durable (sync -f): ${(err as Error).message.split('\n')[0]}`)
          for (const w of batch) {
            try { unlinkSync(w.temp) } catch {}
            w.reject(failure)
          }
          return
        }
        this.syncfsWorks = false
      }
    }
    await Promise.all(batch.map(async (w) => {
      try {
        if (!synced) {
          const fh = await open(w.temp, constants.O_RDONLY | constants.O_NOFOLLOW)
          try { await fh.sync() } finally { await fh.close() }
        }
        renameSync(w.temp, w.final)
        w.resolve()
      } catch (err) {
        try { unlinkSync(w.temp) } catch {}
        w.reject(err)
      }
    }))
  }
}

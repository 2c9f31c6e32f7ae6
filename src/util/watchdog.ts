import { TimeoutError } from './errors.js'

/**
 * An AbortSignal that fires after `ms` without a touch(). Cheaper than a fresh
 * AbortSignal.timeout per read: touch() only records the time; the single timer
 * re-arms itself for the remainder when it finds recent activity.
 */
export class Watchdog {
  private readonly controller = new AbortController()
  private last = Date.now()
  private timer?: NodeJS.Timeout

  constructor (private readonly ms: number, private readonly message: string) {
    this.arm(ms)
  }

  get signal (): AbortSignal { return this.controller.signal }

  touch (): void { this.last = Date.now() }

  stop (): void { clearTimeout(this.timer) }

  private arm (delay: number): void {
    this.timer = setTimeout(() => {
      const idle = Date.now() - this.last
      if (idle >= this.ms) this.controller.abort(new TimeoutError(this.message))
      else this.arm(this.ms - idle)
    }, delay)
    this.timer.unref?.()
  }
}

/**
 * Node 20 lacks Promise.withResolvers, which libp2p 3 calls (utils, yamux, it-queue).
 * Imported first by every entry point, before any libp2p module is evaluated.
 */
declare global {
  interface PromiseConstructor {
    withResolvers<T>(): PromiseWithResolvers<T>
  }
}
if (typeof (Promise as any).withResolvers !== 'function') {
  (Promise as any).withResolvers = function withResolvers<T> () {
    let resolve!: (v: T | PromiseLike<T>) => void
    let reject!: (e?: unknown) => void
    const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
// File system calls go through libuv's thread pool; its default of 4 threads caps the
// small-file rate (every file costs ~6 calls). Must be set before the pool is first used.
process.env.UV_THREADPOOL_SIZE ??= '16'
export {}

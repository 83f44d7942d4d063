// V8's heap for the middleman, which moves large buffers. Measured here (1,000 CT instances of 0.5 MB through the
// middleman, 4 senders, 2 cores): with the default initial old space V8 ran a full collection every few dozen MB of
// buffers received, and its GC threads spent 2.37 s of CPU; with 256 MB they spent 1.18 s, the middleman's CPU fell
// from 7.4 s to 5.5 s and its peak RSS rose from 366 to 385 MB. V8 takes it only from the command line, and then for
// every thread of the process: each launcher passes it (test/runtime.test.ts checks them).
export const HEAP_FLAG = '--initial-old-space-size=256';

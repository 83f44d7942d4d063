// The one door to dcmjs-codecs (libjpeg-turbo, CharLS, OpenJPEG… compiled to WebAssembly): its module loaded
// once per thread from the installed package's own folder, never fetched.
import { createRequire } from 'node:module';
import path from 'node:path';
import codecs from 'dcmjs-codecs';

export const { NativeCodecs, Context } = codecs;
export type CodecContext = InstanceType<typeof codecs.Context>;

let ready: Promise<void> | undefined;

/** Loads the codecs' WebAssembly; every call after the first returns the same promise. */
export function initCodecs(): Promise<void> {
  ready ??= (async () => {
    const main = createRequire(import.meta.url).resolve('dcmjs-codecs');
    await NativeCodecs.initializeAsync({ webAssemblyModulePathOrUrl: path.join(path.dirname(main), 'dcmjs-native-codecs.wasm') });
  })();
  return ready;
}

/** Whether initCodecs has finished in this thread (the synchronous decoders need it). */
export const codecsReady = (): boolean => NativeCodecs.isInitialized();

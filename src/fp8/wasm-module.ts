// Compiling the embedded WebAssembly modules (fp8-kernel-wasm.generated.ts) once per thread, where
// the runtime has WebAssembly SIMD. The project's TypeScript lib has no DOM/wasm typings, so the
// part of the WebAssembly JS API used here is declared here.

interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}

const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
const compiled = new Map<string, object | null>();

/** The module whose bytes are `base64`, compiled on first use; null where this runtime cannot run it. */
export function compiledModule(base64: string): object | null {
  let module = compiled.get(base64);
  if (module === undefined) {
    const bytes = Buffer.from(base64, 'base64');
    module = wasmApi?.validate(bytes) ? new wasmApi.Module(bytes) : null;
    compiled.set(base64, module);
  }
  return module;
}

/** A fresh instance of `module` with `imports`; its exports, typed by the caller. */
export function instantiate<E>(module: object, imports: object = {}): E {
  if (!wasmApi) throw new Error('WebAssembly is not available');
  return new wasmApi.Instance(module, imports).exports as E;
}

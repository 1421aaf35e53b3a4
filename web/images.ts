// The page's built-in test images (decoded to pixels by glow-onnx/web's imagePixels).

export interface BuiltinImage {
  file: string;
  label: number;
  name: string;
}

/** The test images that the build writes next to the page (images/index.json), or none. */
export async function builtinImages(base: string): Promise<BuiltinImage[]> {
  try {
    const response = await fetch(new URL('images/index.json', base));
    if (!response.ok) return [];
    const list = (await response.json()) as BuiltinImage[];
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

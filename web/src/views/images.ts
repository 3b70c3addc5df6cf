// Choosing a room image: the images stored in the sidecar (seeded and uploaded), or a new
// upload (PNG, JPEG, WebP or GIF; the sidecar enforces size and type).
import type { Api, Image } from "../api";
import { h } from "../dom";

export interface ImagePicker {
  element: HTMLElement;
  selected: () => string | null;
}

export function imagePicker(api: Api, initial: string | null): ImagePicker {
  let selected = initial;
  const grid = h("div.image-grid", { role: "radiogroup", "aria-label": "Room image" });
  const error = h("p.error", { role: "alert" });
  const draw = (images: Image[]) => {
    grid.replaceChildren(...images.map((img) => {
      const option = h("button.image-option", {
        type: "button", role: "radio", title: img.name, "aria-checked": String(img.id === selected),
        dataset: { imageId: img.id },
        onclick: () => {
          selected = img.id;
          grid.querySelectorAll(".image-option").forEach((o) => o.setAttribute("aria-checked", String(o === option)));
        },
      }, h("img", { src: img.url, alt: img.name, loading: "lazy" }));
      return option;
    }));
  };
  let images: Image[] = [];
  const load = async () => {
    try {
      images = await api.images();
      if (selected === null && images.length) selected = images[0].id;
      draw(images);
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };
  const file = h("input", {
    type: "file", accept: "image/png,image/jpeg,image/webp,image/gif", name: "upload",
    onchange: async () => {
      const chosen = file.files?.[0];
      if (!chosen) return;
      error.textContent = "";
      try {
        const img = await api.upload(chosen);
        selected = img.id;
        images = [img, ...images];
        draw(images);
      } catch (e) {
        error.textContent = (e as Error).message;
      }
      file.value = "";
    },
  });
  void load();
  return {
    element: h("div.picker", {}, grid, h("label.upload", {}, "Upload an image… ", file), error),
    selected: () => selected,
  };
}

/**
 * The published files `styleclip download` knows: where each lives, under what licence, how big it is, and
 * which model flags accept its name. URLs are the ones the reference repositories themselves use
 * (orpatashnik/StyleCLIP utils.py and README, openai/CLIP clip.py, omertov/encoder4editing README).
 */

export type ModelKind = 'generator' | 'clip' | 'arcface' | 'encoder' | 'mapper' | 'fs3' | 'latents';

export interface KnownFile {
  /** What users type: `styleclip download ffhq`, `--generator ffhq`. */
  name: string;
  /** Other spellings accepted (the published file name, OpenAI's model name). */
  aliases: string[];
  kind: ModelKind;
  /** File name in the cache folder (the published name). */
  file: string;
  url: string;
  /** SHA-256 where the source states one; the transfer is refused when it differs. */
  sha256?: string;
  /** Approximate size in bytes, for the listing (the transfer reads the real length from the server). */
  bytes: number;
  licence: string;
  /** Where the link is published. */
  source: string;
  description: string;
}

const drive = (id: string) => `https://drive.google.com/uc?export=download&id=${id}`;
const STYLECLIP = 'https://github.com/orpatashnik/StyleCLIP';
const STYLECLIP_RAW = 'https://raw.githubusercontent.com/orpatashnik/StyleCLIP/main';
const MB = 1e6;

/** StyleCLIP's 14 pretrained latent mappers (utils.py google_drive_paths), each with its 1024 decoder. */
const MAPPERS: [string, string, string][] = [
  ['afro', '1i5vAqo4z0I-Yon3FNft_YZOq7ClWayQJ', 'afro hairstyle'],
  ['angry', '1g82HEH0jFDrcbCtn3M22gesWKfzWV_ma', 'angry face'],
  ['beyonce', '1KJTc-h02LXs4zqCyo7pzCp0iWeO6T9fz', 'Beyonce'],
  ['bobcut', '1IvyqjZzKS-vNdq_OhwapAcwrxgLAY8UF', 'bob-cut hairstyle'],
  ['bowlcut', '1xwdxI2YCewSt05dEHgkpmmzoauPjEnnZ', 'bowl-cut hairstyle'],
  ['curly_hair', '1xZ7fFB12Ci6rUbUfaHPpo44xUFzpWQ6M', 'curly hair'],
  ['depp', '1FPiJkvFPG_y-bFanxLLP91wUKuy-l3IV', 'Johnny Depp'],
  ['hilary_clinton', '1X7U2zj2lt0KFifIsTfOOzVZXqYyCWVll', 'Hillary Clinton'],
  ['mohawk', '1oMMPc8iQZ7dhyWavZ7VNWLwzf9aX4C09', 'mohawk hairstyle'],
  ['purple_hair', '14H0CGXWxePrrKIYmZnDD2Ccs65EEww75', 'purple hair'],
  ['surprised', '1F-mPrhO-UeWrV1QYMZck63R43aLtPChI', 'surprised face'],
  ['taylor_swift', '10jHuHsKKJxuf3N0vgQbX_SMEQgFHDrZa', 'Taylor Swift'],
  ['trump', '14v8D0uzy4tOyfBU3ca9T0AzTt3v-dNyh', 'Donald Trump'],
  ['zuckerberg', '1NjDcMUL8G-pO3i_9N6EPpQNXeMc3Ar1r', 'Mark Zuckerberg'],
];

const NVIDIA_NC =
  'NVIDIA Source Code License-NC (StyleGAN2 FFHQ weights, converted by rosinality): non-commercial use only';

export const CATALOG: readonly KnownFile[] = Object.freeze([
  {
    name: 'ffhq',
    aliases: ['stylegan2-ffhq-config-f', 'stylegan2-ffhq-config-f.pt'],
    kind: 'generator',
    file: 'stylegan2-ffhq-config-f.pt',
    url: drive('1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT'),
    bytes: 364 * MB,
    licence: NVIDIA_NC,
    source: `${STYLECLIP} (utils.py, README)`,
    description: 'StyleGAN2 FFHQ 1024² generator, rosinality format (g_ema, latent_avg)',
  },
  {
    name: 'vit-b-32',
    aliases: ['ViT-B/32', 'ViT-B-32', 'ViT-B-32.pt', 'clip'],
    kind: 'clip',
    file: 'ViT-B-32.pt',
    url: 'https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt',
    sha256: '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af',
    bytes: 354 * MB,
    licence: 'MIT (OpenAI CLIP)',
    source: 'https://github.com/openai/CLIP (clip/clip.py _MODELS)',
    description: 'OpenAI CLIP ViT-B/32, TorchScript archive, float16',
  },
  {
    name: 'ir-se50',
    aliases: ['model_ir_se50', 'model_ir_se50.pth', 'arcface'],
    kind: 'arcface',
    file: 'model_ir_se50.pth',
    url: drive('1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn'),
    bytes: 175 * MB,
    licence: 'MIT (TreB1eN/InsightFace_Pytorch); trained on MS-Celeb-1M faces',
    source: `${STYLECLIP} (README, ID loss weights)`,
    description: 'ArcFace IR-SE50 face recognition backbone (ID loss)',
  },
  {
    name: 'e4e-ffhq',
    aliases: ['e4e_ffhq_encode', 'e4e_ffhq_encode.pt', 'e4e'],
    kind: 'encoder',
    file: 'e4e_ffhq_encode.pt',
    url: drive('1cUv_reLE6k3604or78EranS7XzuVMWeO'),
    bytes: 1200 * MB,
    licence: `MIT (omertov/encoder4editing); its decoder is the FFHQ generator: ${NVIDIA_NC}`,
    source: 'https://github.com/omertov/encoder4editing (README, FFHQ Inversion)',
    description: 'e4e encoder for FFHQ (image → W+ inversion)',
  },
  ...MAPPERS.map(
    ([name, id, what]): KnownFile => ({
      name,
      aliases: [`${name}.pt`],
      kind: 'mapper',
      file: `${name}.pt`,
      url: drive(id),
      bytes: 141 * MB,
      licence: `MIT (StyleCLIP); includes the FFHQ generator as its decoder: ${NVIDIA_NC}`,
      source: `${STYLECLIP} (utils.py google_drive_paths)`,
      description: `StyleCLIP latent mapper: ${what}`,
    }),
  ),
  {
    name: 'fs3',
    aliases: ['fs3.npy'],
    kind: 'fs3',
    file: 'fs3.npy',
    url: `${STYLECLIP_RAW}/global_directions/npy/ffhq/fs3.npy`,
    bytes: 12.4 * MB,
    licence: 'MIT (StyleCLIP)',
    source: `${STYLECLIP} (global_directions/npy/ffhq/fs3.npy)`,
    description: 'global directions channel relevance for FFHQ 1024 and ViT-B/32 (6048 × 512)',
  },
  {
    name: 'w_plus',
    aliases: ['w_plus.npy'],
    kind: 'latents',
    file: 'w_plus.npy',
    url: `${STYLECLIP_RAW}/global_directions/data/ffhq/w_plus.npy`,
    bytes: 2_506_880,
    licence: 'MIT (StyleCLIP); e4e inversions of FFHQ images',
    source: `${STYLECLIP} (global_directions/data/ffhq/w_plus.npy)`,
    description: '68 real faces as W+ latents [68, 18, 512] (the gallery of the global directions demo)',
  },
]);

/** Groups a user can name instead of every member. */
export const GROUPS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  mappers: MAPPERS.map(([n]) => n),
  all: CATALOG.map((f) => f.name),
});

/** The known file a name or alias refers to (case-insensitive), or undefined. */
export function findKnown(name: string): KnownFile | undefined {
  const n = name.toLowerCase();
  return CATALOG.find((f) => f.name === n || f.aliases.some((a) => a.toLowerCase() === n));
}

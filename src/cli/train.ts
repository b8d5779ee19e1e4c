/** `styleclip train gan|clip|export`: the trainers, each in its own file, and what a run ships. */
import { Command } from 'commander';
import { trainClipCommand } from './train-clip.js';
import { trainExportCommand } from './train-export.js';
import { trainGanCommand } from './train-gan.js';

export function trainCommand(): Command {
  return new Command('train')
    .description('train a StyleGAN2 (rosinality train.py) or a CLIP (contrastive) on the engine')
    .addCommand(trainGanCommand())
    .addCommand(trainClipCommand())
    .addCommand(trainExportCommand());
}

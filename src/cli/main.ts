import { Command } from 'commander';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('styleclip')
    .description('Text-driven editing of StyleGAN2 images (StyleCLIP) on ONNX Runtime')
    .version('0.1.0');
  return program;
}

await buildProgram().parseAsync(process.argv);

"""Seconds per GRPO step of Hugging Face TRL's GRPOTrainer on the work `python bench.py grpo` times, for comparison.

TRL is never a dependency of this project: run this in a throwaway environment, e.g.

    python3 -m venv /tmp/trl && /tmp/trl/bin/pip install torch==2.13.0 trl tokenizers safetensors tqdm
    /tmp/trl/bin/python tools/time_trl.py --max_new_tokens 64 --steps 5

(pin torch to the version you have, or pip fetches another build). The same work on both sides:
- the model: a LlamaForCausalLM with this project's default architecture (d 128, 4 layers, 4 heads, SwiGLU 352,
  RMSNorm eps 1e-5, RoPE theta 10000, tied head), on this project's BPE tokenizer of bench.py's problems (vocabulary
  290): 841,088 parameters, the size of bench.py's model; freshly initialised, so it never answers right and every
  completion runs to max_new_tokens, as in bench.py;
- the step: 16 questions x G = 8 completions at temperature 1, the group-normalised advantages, beta = 0.04 (a
  reference model's forward pass), one policy update per rollout (num_iterations 1, one optimizer step), the
  per-sequence mean of DeepSeekMath's loss (loss_type "grpo"), float32, no gradient checkpointing (bench.py does
  none), the project's accuracy reward.
The time of each optimizer step is measured between TrainerCallback.on_step_begin and on_step_end; the median
over the steps after the first (a warm-up) is printed, with the versions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import bench  # noqa: E402
import rewards  # noqa: E402
import tasks  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work_dir", default="runs/time_trl", help="where the model and TRL's output go")
    args = p.parse_args(argv)
    try:  # only in the throwaway environment
        import datasets
        import transformers
        import trl
    except ImportError:
        raise SystemExit("tools/time_trl.py needs trl (and with it transformers and datasets) in a throwaway "
                         "environment; see the top of this file")
    torch.set_num_threads(args.threads)
    problems, tok = bench.bench_problems()
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    hf_tok.padding_side = "left"
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=352,
                                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                                      max_position_embeddings=64 + args.max_new_tokens, rms_norm_eps=1e-5,
                                      rope_theta=10000.0, tie_word_embeddings=True, pad_token_id=tasks.PAD_ID,
                                      eos_token_id=tasks.EOS_ID, bos_token_id=None)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    folder = os.path.join(args.work_dir, "model")  # TRL builds its reference model from the policy's folder
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    rows = [{"prompt": tasks.format_prompt(q.question, "compact"), "answer": q.answer} for q in problems]
    data = datasets.Dataset.from_list(rows)

    def accuracy(completions, answer, **_):
        return [rewards.accuracy_reward(c, a) for c, a in zip(completions, answer)]

    cfg = trl.GRPOConfig(output_dir=args.work_dir, per_device_train_batch_size=16 * 8, num_generations=8,
                         max_completion_length=args.max_new_tokens, beta=0.04, num_iterations=1,
                         steps_per_generation=1, loss_type="grpo", scale_rewards="group", temperature=1.0,
                         top_p=1.0, learning_rate=3e-5, max_steps=args.steps + 1, use_cpu=True, bf16=False,
                         gradient_checkpointing=False, logging_steps=1000, save_strategy="no", report_to="none",
                         disable_tqdm=True, seed=0, model_init_kwargs={"dtype": torch.float32})
    seconds, start = [], [0.0]

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            start[0] = time.perf_counter()

        def on_step_end(self, *a, **k):
            seconds.append(time.perf_counter() - start[0])

    trainer = trl.GRPOTrainer(model=folder, reward_funcs=accuracy, args=cfg, train_dataset=data,
                              processing_class=hf_tok, callbacks=[Timer()])
    trainer.train()
    print(f"TRL {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {n_params:,} parameters; 16 x G=8, {args.max_new_tokens} new "
          f"tokens, beta 0.04")
    print(f"TRL GRPO step : {statistics.median(seconds[1:]):6.3f} s  (median of {len(seconds) - 1} steps after a "
          f"warm-up; all: {' '.join(f'{s:.3f}' for s in seconds)})")


if __name__ == "__main__":
    main()

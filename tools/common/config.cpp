// The training config schema (every key, default and meaning) and its TOML / override parsing.
#include "tools/common/config.h"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace ff {

namespace {

using List = std::vector<std::string>;

std::vector<ConfigKey> schema() {
  return {
      {"data.train", std::string(""), "training set: train.rec (with train.idx beside it) or an image-folder root"},
      {"data.val", List{}, "verification .bin files evaluated during training"},
      {"data.input_size", int64_t(112), "image side in pixels (a multiple of 16)"},
      {"data.resize", true, "resize images not at data.input_size (bilinear); false refuses them, naming the image"},
      {"data.skip_undecodable", false,
       "RecordIO: skip undecodable records (counted, reported at the end) instead of stopping at the first"},
      {"data.flip", true, "random horizontal flip"},
      {"data.shuffle", true, "shuffle every epoch"},
      {"data.augment", false, "stronger augmentation: blur, grayscale, colour jitter, low resolution"},
      {"data.workers", int64_t(2), "decoding threads"},
      {"model.backbone", std::string("r50"), "r18 r34 r50 r100 r200 mbf"},
      {"model.width", 1.0, "multiplier of the stage widths (small models for CPU runs)"},
      {"model.embedding_size", int64_t(512), "embedding size"},
      {"model.dropout", 0.0, "dropout before the fc layer"},
      {"head.margin", std::string("arcface"), "arcface | cosface | combined"},
      {"head.s", 64.0, "logit scale"},
      {"head.m1", 1.0, "multiplicative angular margin (combined; 1 for the others)"},
      {"head.m2", 0.5, "additive angular margin: ArcFace (combined: 0.3 unless set; CosFace: 0)"},
      {"head.m3", 0.4, "additive cosine margin: CosFace (combined: 0.2 unless set; ArcFace: 0)"},
      {"head.margin_grad", std::string("exact"), "exact | straight_through (PyTorch reference trainer's no-grad margin)"},
      {"method.name", std::string("flatface"), "sgd | sam | asam | aace | flatface"},
      {"method.rho", -1.0, "perturbation radius; -1 = the method's default (0.05 sam/flatface, 0.5 asam, 0.2 aace)"},
      {"method.adaptive", false, "ASAM-style adaptive perturbation (flatface; asam always)"},
      {"method.normalize", true, "divide the perturbation by the gradient norm (false: AACE style)"},
      {"method.loss", std::string("margin"), "perturbation loss: margin | aace"},
      {"method.head", true, "flatface: perturb the class centres too"},
      {"method.sync", true,
       "multi-GPU runs: all-reduce gradients before perturbing (flatface-train runs one process on one device; "
       "the step's norm reducer is the hook a distributed driver sets)"},
      {"optim.name", std::string("sgd"), "sgd | adamw"},
      {"optim.lr", 0.1, "base learning rate"},
      {"optim.momentum", 0.9, "SGD momentum"},
      {"optim.nesterov", false, "Nesterov momentum"},
      {"optim.weight_decay", 5e-4, "weight decay"},
      {"optim.no_decay_bn", false, "no weight decay on BatchNorm and PReLU parameters"},
      {"optim.schedule", std::string("poly"), "poly | cosine | multistep"},
      {"optim.power", 1.0, "polynomial decay power"},
      {"optim.warmup_steps", int64_t(0), "linear warm-up steps"},
      {"optim.milestones", List{}, "multistep: steps at which lr is multiplied by gamma"},
      {"optim.gamma", 0.1, "multistep factor"},
      {"train.batch_size", int64_t(128), "batch size"},
      {"train.epochs", int64_t(20), "epochs (ignored when train.steps > 0)"},
      {"train.steps", int64_t(0), "optimizer steps; 0 = epochs x steps per epoch"},
      {"train.seed", int64_t(0), "seed of initialisation, data order and augmentation"},
      {"train.device", std::string("auto"), "auto (the GPU when this build has CUDA and one is visible) | cpu | cuda"},
      {"train.threads", int64_t(0), "CPU threads (0 = all cores)"},
      {"train.output", std::string("runs/default"), "output folder"},
      {"train.log_every", int64_t(10), "steps between progress lines"},
      {"train.eval_every", int64_t(0), "steps between evaluations (0 = at the end only)"},
      {"train.save_every", int64_t(0), "steps between checkpoints (0 = at the end only)"},
      {"train.keep", int64_t(3), "checkpoints kept"},
      {"train.eval_batch", int64_t(64), "batch size of embedding extraction"},
  };
}

std::string kind_name(const ConfigValue& v) {
  switch (v.index()) {
    case 0: return "a boolean";
    case 1: return "an integer";
    case 2: return "a number";
    case 3: return "a string";
    default: return "a list of strings";
  }
}

std::string render(const ConfigValue& v) {
  std::ostringstream os;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) os << (x ? "true" : "false");
        else if constexpr (std::is_same_v<T, std::string>) os << toml::value<std::string>(x);
        else if constexpr (std::is_same_v<T, List>) {
          os << "[";
          for (size_t i = 0; i < x.size(); ++i) os << (i ? ", " : "") << toml::value<std::string>(x[i]);
          os << "]";
        } else if constexpr (std::is_same_v<T, double>) {
          // The shortest text that reads back as x (toml++ writes 17 digits: 0.40000000000000002).
          char b[64];
          std::string t(b, std::to_chars(b, b + sizeof b, x).ptr);
          if (std::isfinite(x) && t.find_first_of(".e") == std::string::npos) t += ".0";  // a float, not an integer
          os << t;
        } else {
          os << x;
        }
      },
      v);
  return os.str();
}

}  // namespace

Config::Config() : keys_(schema()) {}

ConfigKey& Config::find(const std::string& key) {
  for (auto& k : keys_)
    if (k.key == key) return k;
  throw Error(msg("unknown config key '", key, "' (flatface-train --help-config lists them)"));
}

const ConfigKey& Config::find(const std::string& key) const { return const_cast<Config*>(this)->find(key); }

void Config::load_toml(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FF_CHECK(in, "cannot read config file ", path);
  std::ostringstream text;
  text << in.rdbuf();
  load_toml_text(text.str(), path);
}

void Config::load_toml_text(const std::string& text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw Error(msg(path, ":", e.source().begin.line, ": ", e.description()));
  }
  for (auto& [section, node] : root) {
    auto* table = node.as_table();
    FF_CHECK(table, path, ": top-level key '", section.str(), "' must be a [section]");
    for (auto& [name, v] : *table) {
      std::string key = std::string(section.str()) + "." + std::string(name.str());
      ConfigKey& k = find(key);
      bool ok = true;
      switch (k.value.index()) {
        case 0: ok = v.is_boolean(); if (ok) k.value = v.as_boolean()->get(); break;
        case 1: ok = v.is_integer(); if (ok) k.value = v.as_integer()->get(); break;
        case 2:
          ok = v.is_number();
          if (ok) k.value = v.is_integer() ? (double)v.as_integer()->get() : v.as_floating_point()->get();
          break;
        case 3: ok = v.is_string(); if (ok) k.value = v.as_string()->get(); break;
        default: {
          List list;
          if (auto* arr = v.as_array()) {
            for (auto& e : *arr) {
              if (e.is_string()) list.push_back(e.as_string()->get());
              else if (e.is_integer()) list.push_back(std::to_string(e.as_integer()->get()));
              else ok = false;
            }
          } else {
            ok = false;
          }
          if (ok) k.value = list;
        }
      }
      FF_CHECK(ok, path, ": '", key, "' must be ", kind_name(k.value));
      explicitly_set_[key] = 1;
    }
  }
}

void Config::set(const std::string& assignment) {
  auto eq = assignment.find('=');
  FF_CHECK(eq != std::string::npos && eq > 0, "override '", assignment, "' is not of the form key=value");
  std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  ConfigKey& k = find(key);
  auto bad = [&] { return Error(msg("override '", assignment, "': '", key, "' must be ", kind_name(k.value))); };
  try {
    size_t used = 0;
    switch (k.value.index()) {
      case 0:
        if (text == "true" || text == "1") k.value = true;
        else if (text == "false" || text == "0") k.value = false;
        else throw bad();
        break;
      case 1: k.value = (int64_t)std::stoll(text, &used); if (used != text.size()) throw bad(); break;
      case 2: k.value = std::stod(text, &used); if (used != text.size()) throw bad(); break;
      case 3: k.value = text; break;
      default: {
        List list;
        std::stringstream ss(text);
        for (std::string item; std::getline(ss, item, ',');)
          if (!item.empty()) list.push_back(item);
        k.value = list;
      }
    }
  } catch (const std::logic_error&) {
    throw bad();
  }
  explicitly_set_[key] = 1;
}

bool Config::get_bool(const std::string& key) const { return std::get<bool>(find(key).value); }
int64_t Config::get_int(const std::string& key) const { return std::get<int64_t>(find(key).value); }
double Config::get_double(const std::string& key) const { return std::get<double>(find(key).value); }
const std::string& Config::get_string(const std::string& key) const { return std::get<std::string>(find(key).value); }
const List& Config::get_list(const std::string& key) const { return std::get<List>(find(key).value); }

std::vector<std::string> Config::differing_keys(const Config& other) const {
  std::vector<std::string> keys;
  for (const auto& k : keys_)
    if (render(k.value) != render(other.find(k.key).value)) keys.push_back(k.key);
  return keys;
}

std::string Config::value_text(const std::string& key) const {
  const ConfigValue& v = find(key).value;
  return std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : render(v);
}

std::string Config::to_toml() const {
  std::ostringstream os;
  std::string section;
  for (const auto& k : keys_) {
    auto dot = k.key.find('.');
    std::string s = k.key.substr(0, dot);
    if (s != section) {
      os << (section.empty() ? "" : "\n") << "[" << s << "]\n";
      section = s;
    }
    os << k.key.substr(dot + 1) << " = " << render(k.value) << "  # " << k.help << "\n";
  }
  return os.str();
}

std::string Config::help() {
  std::ostringstream os;
  for (const auto& k : schema()) os << "  " << k.key << " = " << render(k.value) << "\n      " << k.help << "\n";
  return os.str();
}

}  // namespace ff

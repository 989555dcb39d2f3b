// The flag table as a run's schema: what saved() records of each role and what restore() takes
// back, keeps or refuses on resume.
#include <catch2/catch.hpp>

#include "tools/cli.h"

using namespace unet;

namespace {

struct Flags {
  std::string data = "d", out;
  int batch = 16;
  int64_t seed = 0;
  double lr = 1e-4;
  bool zscore = false;
  int epochs = 30;
};

// A table like unet train's: identity flags of every type, one resumable, one without a role.
Options table(Flags& f) {
  Options options("train", "test");
  options.add("data", &f.data, "DIR", "").role(FlagRole::identity)
      .add("batch", &f.batch, "B", "").role(FlagRole::identity)
      .add("seed", &f.seed, "S", "").role(FlagRole::identity)
      .add("lr", &f.lr, "LR", "").role(FlagRole::identity)
      .flag("zscore", &f.zscore, "").role(FlagRole::identity)
      .add("epochs", &f.epochs, "E", "").role(FlagRole::resumable)
      .add("out", &f.out, "DIR", "");
  return options;
}

Json saved_run() {
  Flags f;
  Options options = table(f);
  options.parse({"--data", "lgg", "--batch", "8", "--seed", "3", "--lr", "0.002", "--zscore", "--epochs", "5",
                 "--out", "run"});
  Json state = Json::object();
  state.set("identity", options.saved(FlagRole::identity));
  state.set("epochs", options.saved(FlagRole::resumable).at("epochs"));
  return state;
}

std::string restore_error(const std::vector<std::string>& args, const Json& identity) {
  Flags f;
  Options options = table(f);
  options.parse(args);
  try {
    options.restore(identity, FlagRole::identity);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST_CASE("options: saved() holds exactly the flags of a role, parsed or default", "[options]") {
  const Json state = saved_run();
  CHECK(state.at("identity").dump() == R"({"data":"lgg","batch":8,"seed":3,"lr":0.002,"zscore":true})");
  Flags f;
  Options options = table(f);
  options.parse({"--out", "x"});
  CHECK(options.saved(FlagRole::resumable).dump() == R"({"epochs":30})");
  CHECK(options.saved(FlagRole::none).dump() == R"({"out":"x"})");
}

TEST_CASE("options: restore() takes every saved flag back unless it is given again", "[options]") {
  const Json state = saved_run();
  Flags f;
  Options options = table(f);
  options.parse({"--out", "run", "--batch", "8", "--epochs", "9"});
  options.restore(state.at("identity"), FlagRole::identity);
  options.restore(state, FlagRole::resumable);
  CHECK(f.data == "lgg");
  CHECK(f.batch == 8);
  CHECK(f.seed == 3);
  CHECK(f.lr == 0.002);
  CHECK(f.zscore);
  CHECK(f.epochs == 9);  // resumable and given: the new value
  CHECK(options.saved(FlagRole::identity).dump() == state.at("identity").dump());

  Flags g;
  Options again = table(g);
  again.parse({"--out", "run"});
  again.restore(state, FlagRole::resumable);
  CHECK(g.epochs == 5);
}

TEST_CASE("options: restore() refuses an identity flag given with another value", "[options]") {
  const Json identity = saved_run().at("identity");
  CHECK(restore_error({"--lr", "0.5"}, identity) == "--lr 0.5 differs from the run being resumed (0.002)");
  CHECK(restore_error({"--data", "other"}, identity) ==
        R"(--data "other" differs from the run being resumed ("lgg"))");
  CHECK(restore_error({"--lr", "0.002", "--seed", "3"}, identity).empty());
}

TEST_CASE("options: a flag newer than the run counts as its default; a saved flag unknown here is refused",
          "[options]") {
  Json older = Json::object();  // a run from before --zscore and --seed were saved
  older.set("data", "lgg");
  older.set("batch", 8);
  older.set("lr", 0.002);
  CHECK(restore_error({}, older).empty());
  CHECK(restore_error({"--seed", "0"}, older).empty());
  CHECK(restore_error({"--zscore"}, older) == "--zscore true differs from the run being resumed (false)");

  Json newer = older;
  newer.set("precision", "bf16");
  CHECK(restore_error({}, newer) == "the run was started with --precision \"bf16\", which this unet train does not "
                                    "know (a run of another version)");
  Json wrong = older;
  wrong.set("batch", "eight");
  CHECK_THAT(restore_error({}, wrong), Catch::StartsWith(R"(the run's saved --batch "eight" is not valid)"));
}

TEST_CASE("options: a repeatable flag collects each value; any other flag twice is refused", "[options]") {
  std::vector<std::string> weights;
  std::string out;
  Options options("eval", "test");
  options.add("weights", &weights, "FILE", "weights").required().add("out", &out, "DIR", "");
  CHECK(options.parse({"--weights", "a", "--out", "o", "--weights=b", "--weights", "c"}));
  CHECK(weights == std::vector<std::string>{"a", "b", "c"});
  CHECK_THAT(options.help(), Catch::Contains("(repeatable)"));
  std::vector<std::string> again;
  std::string twice;
  Options strict("eval", "test");
  strict.add("weights", &again, "FILE", "").add("out", &twice, "DIR", "");
  CHECK_THROWS_WITH(strict.parse({"--out", "a", "--out", "b"}), "--out given twice");
  std::vector<std::string> none;
  Options needed("eval", "test");
  needed.add("weights", &none, "FILE", "").required();
  CHECK_THROWS_WITH(needed.parse({}), "eval: --weights is required");
}

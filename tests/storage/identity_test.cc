// Identity records (storage/identity.h) and the sent-as id of a journaled event: the id an event was sent as
// survives the journal (replay at open, checkpoints) and the timeline; the identity record round-trips and
// state_after is the rule both the first run and recovery follow.
#include "storage/identity.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "storage/store.h"
#include "tests/storage/store_fixture.h"

namespace rapport {
namespace {

Event purchase(std::string_view customer, std::string_view id, std::string_view sent_as = {}) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.sent_as.assign(sent_as);
  e.ts_ms = 1700000000000;
  e.amount = 12.5;
  e.channel.assign("web");
  return e;
}

class IdentityStore : public StoreFixture {};

TEST_F(IdentityStore, TheSentAsIdSurvivesReplayAndCheckpointsAndIsInTheTimeline) {
  StoreOptions o = options();
  o.checkpoint_on_close = false;  // the reopen replays the journal
  {
    auto store = open_ok(o);
    ASSERT_NE(store, nullptr);
    apply_ok(*store, {purchase("ann", "e1", "ann@example.com"), purchase("ann", "e2")});
  }
  for (int round = 0; round < 2; ++round) {  // replayed, then checkpointed
    auto store = open_ok(o);
    ASSERT_NE(store, nullptr);
    auto events = store->customer_events("ann", std::nullopt, 10);
    ASSERT_TRUE(events.ok()) << events.message();
    ASSERT_EQ(events->size(), 2u);
    EXPECT_EQ((*events)[0].event_id, "e2");
    EXPECT_EQ((*events)[0].sent_as, "");
    EXPECT_EQ((*events)[1].event_id, "e1");
    EXPECT_EQ((*events)[1].sent_as, "ann@example.com");
    ASSERT_TRUE(store->checkpoint().ok());
  }
}

TEST(IdentityRecord, RoundTripsWithAnOperationInProgress) {
  IdentityState state;
  state.groups["ann"] = {"ann@example.com", "crm-7"};
  state.shadowed["ann"] = {purchase("ann", "dup", "crm-7")};
  state.op.kind = IdentityOpKind::kMerge;
  state.op.survivor = "ann";
  state.op.ids = {"phone-1"};
  state.op.staged = {purchase("ann", "p1", "phone-1")};
  state.op.shadowed = {purchase("ann", "dup", "crm-7"), purchase("ann", "e9", "phone-1")};
  const auto decoded = decode_identity_state(encode_identity_state(state));
  ASSERT_TRUE(decoded.ok()) << decoded.message();
  EXPECT_EQ(decoded->groups, state.groups);
  ASSERT_EQ(decoded->shadowed.at("ann").size(), 1u);
  EXPECT_EQ(decoded->shadowed.at("ann")[0].sent_as.view(), "crm-7");
  EXPECT_EQ(decoded->op.kind, IdentityOpKind::kMerge);
  EXPECT_EQ(decoded->op.ids, state.op.ids);
  ASSERT_EQ(decoded->op.staged.size(), 1u);
  EXPECT_EQ(decoded->op.staged[0].event_id.view(), "p1");
  EXPECT_EQ(decoded->op.staged[0].sent_as.view(), "phone-1");
  EXPECT_EQ(decoded->op.staged[0].amount, 12.5);
  EXPECT_EQ(decoded->op.shadowed.size(), 2u);
}

TEST(IdentityRecord, ACorruptRecordIsAnErrorNamingTheKey) {
  IdentityState state;
  state.groups["a"] = {"b"};
  std::string bytes = encode_identity_state(state);
  for (const std::string& bad : {std::string(), bytes.substr(0, bytes.size() - 1), bytes + "x", "\x07" + bytes}) {
    const auto decoded = decode_identity_state(bad);
    ASSERT_FALSE(decoded.ok());
    EXPECT_NE(decoded.message().find("identity.state"), std::string::npos) << decoded.message();
  }
}

TEST(IdentityRecord, StateAfterFlattensUnmergesAndErases) {
  IdentityState s;
  s.groups["y"] = {"z"};
  s.shadowed["y"] = {purchase("y", "d", "z")};
  s.op.kind = IdentityOpKind::kMerge;  // merging the survivor y brings z along, and y's shadows move
  s.op.survivor = "q";
  s.op.ids = {"y"};
  s.op.shadowed = {purchase("q", "d", "z")};
  IdentityState merged = state_after(s);
  EXPECT_EQ(merged.op.kind, IdentityOpKind::kNone);
  EXPECT_EQ(merged.groups, (std::map<std::string, std::vector<std::string>>{{"q", {"y", "z"}}}));
  EXPECT_EQ(merged.shadowed.count("y"), 0u);
  EXPECT_EQ(merged.shadowed.at("q").size(), 1u);

  merged.op.kind = IdentityOpKind::kUnmerge;
  merged.op.survivor = "q";
  merged.op.ids = {"z"};
  const IdentityState unmerged = state_after(merged);  // op.shadowed empty: no shadows left
  EXPECT_EQ(unmerged.groups, (std::map<std::string, std::vector<std::string>>{{"q", {"y"}}}));
  EXPECT_EQ(unmerged.shadowed.count("q"), 0u);

  IdentityState erase = unmerged;
  erase.op.kind = IdentityOpKind::kErase;
  erase.op.survivor = "q";
  erase.op.ids = {"y"};
  EXPECT_TRUE(state_after(erase).groups.empty());
}

}  // namespace
}  // namespace rapport

// IdList: inline single id, growth to the heap, removal, moves; checked against a model.
#include "server/id_list.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace herald::server {
namespace {

std::vector<IdList::Id> sorted(const IdList& l) {
  std::vector<IdList::Id> v;
  for (size_t i = 0; i < l.size(); ++i) v.push_back(l[i]);
  std::sort(v.begin(), v.end());
  return v;
}

TEST(IdList, OneIdInlineThenGrowsAndShrinks) {
  static_assert(sizeof(IdList) == 16, "one id inline, no vector overhead");
  IdList l;
  EXPECT_TRUE(l.empty());
  l.push_back(7);
  EXPECT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0], 7u);
  EXPECT_FALSE(l.remove(8));
  EXPECT_TRUE(l.remove(7));
  EXPECT_TRUE(l.empty());
  for (IdList::Id i = 1; i <= 100; ++i) l.push_back(i);
  EXPECT_EQ(l.size(), 100u);
  EXPECT_TRUE(l.remove(50));
  EXPECT_FALSE(l.remove(50));
  std::vector<IdList::Id> want;
  for (IdList::Id i = 1; i <= 100; ++i) {
    if (i != 50) want.push_back(i);
  }
  EXPECT_EQ(sorted(l), want);
}

TEST(IdList, MovesKeepTheIdsAndLeaveTheSourceEmpty) {
  IdList one;
  one.push_back(3);
  IdList many;
  for (IdList::Id i = 0; i < 5; ++i) many.push_back(i);
  IdList a(std::move(one));
  IdList b;
  b = std::move(many);
  EXPECT_EQ(sorted(a), std::vector<IdList::Id>({3}));
  EXPECT_EQ(sorted(b), std::vector<IdList::Id>({0, 1, 2, 3, 4}));
  EXPECT_TRUE(one.empty());   // NOLINT(bugprone-use-after-move): documented moved-from state
  EXPECT_TRUE(many.empty());  // NOLINT(bugprone-use-after-move)
  one.push_back(9);           // a moved-from list is usable
  EXPECT_EQ(sorted(one), std::vector<IdList::Id>({9}));
  b = std::move(a);  // replaces a heap list with an inline one
  EXPECT_EQ(sorted(b), std::vector<IdList::Id>({3}));
}

TEST(IdList, RandomOperationsMatchAModel) {
  std::mt19937 rng(42);
  IdList l;
  std::vector<IdList::Id> model;
  for (int step = 0; step < 20000; ++step) {
    const IdList::Id id = rng() % 64;
    if (rng() % 2 == 0) {
      l.push_back(id);
      model.push_back(id);
    } else {
      const auto it = std::find(model.begin(), model.end(), id);
      EXPECT_EQ(l.remove(id), it != model.end());
      if (it != model.end()) model.erase(it);
    }
    ASSERT_EQ(l.size(), model.size());
  }
  std::sort(model.begin(), model.end());
  EXPECT_EQ(sorted(l), model);
}

}  // namespace
}  // namespace herald::server
